"""The network builds run on: the internet yes, the host and the apps no (issue 11, 3).

A build's ``RUN`` steps run in containers on ``<instance>-build``, a user-defined bridge
(Linux bridge ``gpb<hash>``) with a subnet from ``app_network_pool``. One iptables chain of
our own, ``GITPAAS-<bridge>``, is jumped to from ``INPUT`` and from ``DOCKER-USER`` (which
Docker evaluates first in ``FORWARD``) for packets entering from that bridge only:

- to the app networks (``app_network_pool``): dropped;
- DNS (port 53) goes on: Docker's resolver in the build's namespace asks the host's
  resolvers, which may live on the host itself or at a link-local address (GCP's
  169.254.169.254, AWS's 169.254.169.253);
- to any address of the host itself (``addrtype LOCAL``): dropped. That is the router or
  edge on the bridge gateway (8080/80/443), MariaDB on the docker0 gateway, Redis, SSH,
  and every port published on a host address;
- to link-local addresses (cloud metadata services hand out credentials at
  169.254.169.254): dropped;
- anything else (the internet: apt, pip, npm) goes on through Docker's own rules.

Other Docker bridges (docker0, the app networks) are cut off by Docker's isolation chains
as well. The loopback-published ports are out of reach anyway: 127.0.0.1 in a build is the
build's own. Rules are checked (``-C``) before they are added, so ``ensure`` is idempotent
and cheap enough to run before every build; ``remove`` takes everything away again.
"""

from __future__ import annotations

import logging
import subprocess
import threading

import docker
import docker.errors

from ..errors import DeployError, ServiceError
from ..runtime.network import Net, bridge_name, create_network, find_network

BRIDGE_PREFIX = "gpb"
LINK_LOCAL = "169.254.0.0/16"
HOOKS = ("INPUT", "DOCKER-USER")
log = logging.getLogger(__name__)


def chain_name(bridge: str) -> str:
    return f"GITPAAS-{bridge}"


def chain_rules(pool: str) -> list[list[str]]:
    """The rules of a build bridge's chain, in order (iptables arguments after the chain)."""
    return [["-d", pool, "-j", "DROP"],
            ["-p", "udp", "--dport", "53", "-j", "RETURN"],
            ["-p", "tcp", "--dport", "53", "-j", "RETURN"],
            ["-m", "addrtype", "--dst-type", "LOCAL", "-j", "DROP"],
            ["-d", LINK_LOCAL, "-j", "DROP"],
            ["-j", "RETURN"]]


def listed_rule(rule: list[str]) -> list[str]:
    """``rule`` as ``iptables -S`` prints it (a port match names its module)."""
    if "--dport" in rule and "-p" in rule:
        proto = rule[rule.index("-p") + 1]
        at = rule.index("-p") + 2
        return [*rule[:at], "-m", proto, *rule[at:]]
    return rule


class BuildSandbox:
    """The build network of one instance and its firewall chain."""

    def __init__(self, client: docker.DockerClient, instance: str, pool: str, prefix: int,
                 iptables: str = "iptables") -> None:
        self.client = client
        self.instance = instance
        self.pool = Net(pool)
        self.prefix = prefix
        self.iptables = iptables
        self.network = f"{instance}-build"
        self.bridge = bridge_name(self.network, BRIDGE_PREFIX)
        self.chain = chain_name(self.bridge)
        self._lock = threading.Lock()

    def ensure(self) -> str:
        """Create the network and its rules where missing; return the network's name.

        Raises ``DeployError`` when the rules cannot be set: a build never runs
        unconfined."""
        with self._lock:
            try:
                if not find_network(self.client, self.network):
                    create_network(self.client, self.network, self.pool, self.prefix,
                                   self.bridge, {"gitpaas.instance": self.instance,
                                                 "gitpaas.build": "1"})
            except docker.errors.DockerException as exc:
                raise ServiceError(f"Docker is unavailable: {exc}") from exc
            self._ensure_rules()
        return self.network

    def gateway(self) -> str:
        """The host's address on the build network."""
        net = self.client.api.inspect_network(self.network)
        gateway: str = net["IPAM"]["Config"][0]["Gateway"]
        return gateway

    def _run(self, *args: str, check: bool = True) -> bool:
        try:
            done = subprocess.run([self.iptables, "-w", "5", *args], capture_output=True,
                                  text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DeployError(f"cannot set up the build sandbox: {self.iptables}: {exc}")
        if check and done.returncode != 0:
            raise DeployError(f"cannot set up the build sandbox: iptables {' '.join(args)}: "
                              f"{' '.join(done.stderr.split())}")
        return done.returncode == 0

    def _ensure_rules(self) -> None:
        if self._rules_in_place():
            return  # one iptables run per build instead of nine (~30 ms on a busy host)
        if not self._run("-n", "-L", self.chain, check=False):
            self._run("-N", self.chain)
        # Inserted at their place, so a chain made by an older version gains new rules in
        # order (an empty chain for a moment, by flushing it, would let a build out).
        for position, rule in enumerate(chain_rules(str(self.pool)), 1):
            if not self._run("-C", self.chain, *rule, check=False):
                self._run("-I", self.chain, str(position), *rule)
        for hook in HOOKS:
            jump = ["-i", self.bridge, "-j", self.chain]
            if not self._run("-C", hook, *jump, check=False):
                self._run("-I", hook, "1", *jump)

    def _rules_in_place(self) -> bool:
        """Whether ``iptables -S`` already shows the chain's rules first and in order and
        every hook's jump. Only a listing that matches line for line counts: anything
        else (another iptables' spelling included) takes the checking path below."""
        try:
            done = subprocess.run([self.iptables, "-w", "5", "-S"], capture_output=True,
                                  text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return False
        if done.returncode != 0:
            return False
        lines = done.stdout.splitlines()
        chain = [line for line in lines if line.startswith(f"-A {self.chain} ")]
        wanted = [f"-A {self.chain} {' '.join(listed_rule(rule))}"
                  for rule in chain_rules(str(self.pool))]
        jumps = {f"-A {hook} -i {self.bridge} -j {self.chain}" for hook in HOOKS}
        return chain[:len(wanted)] == wanted and jumps <= set(lines)

    def remove(self) -> None:
        """Remove the rules, the chain and the network (nothing left is fine)."""
        with self._lock:
            for hook in HOOKS:
                while self._run("-D", hook, "-i", self.bridge, "-j", self.chain,
                                check=False):
                    pass
            if self._run("-n", "-L", self.chain, check=False):
                self._run("-F", self.chain, check=False)
                self._run("-X", self.chain, check=False)
            try:
                for net in find_network(self.client, self.network):
                    self.client.api.remove_network(net["Id"])
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as exc:
                log.warning("cannot remove network %s: %s", self.network, exc)


def remove_instance_networks(client: docker.DockerClient, instance: str) -> None:
    """Remove everything network-wise an instance made: its build sandbox (rules, chain,
    network) and its apps' networks (their containers must be gone). For uninstalls and
    tests."""
    BuildSandbox(client, instance, "10.0.0.0/8", 24).remove()
    try:
        found = client.api.networks(filters={"label": f"gitpaas.instance={instance}"})
        for net in found:
            try:
                client.api.remove_network(net["Id"])
            except docker.errors.NotFound:
                pass
    except docker.errors.APIError as exc:
        log.warning("cannot remove the networks of %s: %s", instance, exc)
