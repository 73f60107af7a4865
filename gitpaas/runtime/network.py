"""One user-defined bridge per app, with a subnet gitpaas picks itself (issue 11, 4).

Docker isolates user-defined bridges from each other (its DOCKER-ISOLATION chains), so an
app's containers reach no other app's. Docker's default address pools hold about 30
networks: a host with hundreds of apps would run out, so subnets come from the
``app_network_pool`` setting (a /16 carved into ``/app_network_prefix`` subnets), skipping
every subnet an existing Docker network or a host route already uses. dockerd's own
configuration is never touched.

Bridges are named ``gpa<hash>`` (Linux allows 15 characters), so a host firewall can
recognise app bridges (``-i gpa+``), e.g. to let them reach MariaDB.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import random
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import docker
import docker.errors
import docker.types

from ..errors import DeployError, ServiceError

LABEL = "gitpaas"
BRIDGE_PREFIX = "gpa"
ROUTES = Path("/proc/net/route")
ATTEMPTS = 20  # another install may take the same subnet at the same moment
log = logging.getLogger(__name__)
Net = ipaddress.IPv4Network


def bridge_name(network: str, prefix: str = BRIDGE_PREFIX) -> str:
    """The Linux bridge of ``network``: ``<prefix>`` + 11 hex digits of its hash."""
    return prefix + hashlib.sha256(network.encode()).hexdigest()[:15 - len(prefix)]


def host_routes(path: Path = ROUTES) -> list[Net]:
    """The host's IPv4 routes except the default one (subnets a network must not cover)."""
    try:
        lines = path.read_text().splitlines()[1:]
    except OSError:
        return []
    found = []
    for line in lines:
        fields = line.split()
        if len(fields) < 8:
            continue
        dest = ipaddress.IPv4Address(int(fields[1], 16).to_bytes(4, "little"))
        mask = ipaddress.IPv4Address(int(fields[7], 16).to_bytes(4, "little"))
        net = Net(f"{dest}/{mask}", strict=False)
        if net.prefixlen:
            found.append(net)
    return found


def free_indexes(pool: Net, prefix: int, used: Iterable[Net]) -> list[int]:
    """The indexes (in order) of the ``/prefix`` subnets of ``pool`` that overlap nothing
    in ``used``: subnet ``i`` starts ``i * 2**(32 - prefix)`` addresses into the pool.

    Integer arithmetic, linear in the pool's subnets plus the used ones: checking each
    candidate against each used subnet with ``ipaddress`` cost 0.14 s with 200 apps (1024
    candidates x 200 networks), and grew with every app's first deploy."""
    size = 1 << (32 - prefix)
    low, high = int(pool.network_address), int(pool.broadcast_address)
    blocked = bytearray((high - low + 1) // size)
    for net in used:
        first, last = int(net.network_address), int(net.broadcast_address)
        if last < low or first > high:
            continue
        a, b = (max(first, low) - low) // size, (min(last, high) - low) // size
        blocked[a:b + 1] = b"\x01" * (b - a + 1)
    return [i for i, taken in enumerate(blocked) if not taken]


def nth_subnet(pool: Net, prefix: int, index: int) -> Net:
    """Subnet ``index`` of ``pool`` cut into ``/prefix`` subnets."""
    return Net((int(pool.network_address) + (index << (32 - prefix)), prefix))


def free_subnets(pool: Net, prefix: int, used: Iterable[Net]) -> list[Net]:
    """The ``/prefix`` subnets of ``pool`` that overlap nothing in ``used``, in order."""
    return [nth_subnet(pool, prefix, i) for i in free_indexes(pool, prefix, used)]


def free_subnet(pool: Net, prefix: int, used: Iterable[Net]) -> Net | None:
    """The first ``/prefix`` subnet of ``pool`` that overlaps nothing in ``used``."""
    free = free_indexes(pool, prefix, used)
    return nth_subnet(pool, prefix, free[0]) if free else None


def used_subnets(client: docker.DockerClient) -> list[Net]:
    """IPv4 subnets of every Docker network on the engine and of the host's routes."""
    used = host_routes()
    for net in client.api.networks():
        for config in (net.get("IPAM") or {}).get("Config") or []:
            try:
                subnet = ipaddress.ip_network(config.get("Subnet", ""), strict=False)
            except ValueError:
                continue
            if subnet.version == 4:
                used.append(subnet)
    return used


def find_network(client: docker.DockerClient, name: str) -> list[dict[str, Any]]:
    """The network named exactly ``name`` (Docker's name filter matches substrings)."""
    return [n for n in client.api.networks(names=[name]) if n.get("Name") == name]


def create_network(client: docker.DockerClient, name: str, pool: Net, prefix: int,
                   bridge: str, labels: dict[str, str]) -> None:
    """A bridge network ``name`` on Linux bridge ``bridge``, its subnet a free one of
    ``pool``; one made meanwhile by another process is fine."""
    t0 = time.monotonic()
    for attempt in range(ATTEMPTS):
        free = free_indexes(pool, prefix, used_subnets(client))
        t1 = time.monotonic()
        if not free:
            raise DeployError(f"no free /{prefix} subnet left in app_network_pool {pool}: "
                              "widen it in the settings")
        # The first free one, unless another process just took it: then a random one, so
        # two creators racing do not keep colliding.
        subnet = nth_subnet(pool, prefix, free[0] if attempt == 0 else random.choice(free))
        ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(
            subnet=str(subnet), gateway=str(next(subnet.hosts())))])
        try:
            client.api.create_network(
                name, driver="bridge", ipam=ipam, check_duplicate=True, labels=labels,
                options={"com.docker.network.bridge.name": bridge})
            log.info("network %s: %s, %.3f s (Docker's create %.3f s)", name, subnet,
                     time.monotonic() - t0, time.monotonic() - t1)
            return
        except docker.errors.APIError as exc:
            text = str(exc.explanation or exc).lower()
            if "already exists" in text:
                return
            if "overlap" not in text:
                raise DeployError(f"cannot create network {name}: "
                                  f"{exc.explanation or exc}") from exc
    raise DeployError(f"cannot create network {name}: its subnets kept being taken")


class AppNetworks:
    """Creates and removes the per-app networks of one instance."""

    def __init__(self, client: docker.DockerClient, instance: str, pool: str,
                 prefix: int) -> None:
        self.client = client
        self.instance = instance
        self.pool = Net(pool)
        self.prefix = prefix
        self._lock = threading.Lock()
        # Networks this object found or made: a deploy's starts need not list Docker's
        # networks again (one filtered listing per container, under the lock, and
        # dockerd's filtering grows with the number of networks). Forgotten on removal
        # here; a network removed behind our back makes a start fail with "network ...
        # not found", after which the caller ``forget``s it and ensures it again.
        self._known: set[str] = set()

    def name(self, app: str) -> str:
        return f"{self.instance}.{app}"

    def ensure(self, app: str, cached: bool = False) -> str:
        """The app's network, created on first use; returns its name. ``cached``: trust
        an earlier ``ensure`` of this object (see ``forget``)."""
        name = self.name(app)
        if cached and name in self._known:  # no wait for another app's network creation
            return name
        with self._lock:  # parallel starts of one deploy: one creation
            if cached and name in self._known:  # made meanwhile
                return name
            try:
                if not self._find(name):
                    self._create(app, name)
            except docker.errors.DockerException as exc:
                raise ServiceError(f"Docker is unavailable: {exc}") from exc
            self._known.add(name)
        return name

    def forget(self, app: str) -> None:
        """The next ``ensure`` of ``app`` asks Docker again (its network was not found)."""
        with self._lock:
            self._known.discard(self.name(app))

    def _find(self, name: str) -> list[dict[str, Any]]:
        return find_network(self.client, name)

    def _create(self, app: str, name: str) -> None:
        create_network(self.client, name, self.pool, self.prefix, bridge_name(name),
                       {f"{LABEL}.instance": self.instance, f"{LABEL}.app": app})

    def remove(self, app: str) -> None:
        """Remove the app's network; absent is fine. Containers still attached (a one-off
        that outlived its app) are disconnected first: the network dies with its app."""
        name = self.name(app)
        self.forget(app)
        try:
            for net in self._find(name):
                try:
                    self.client.api.remove_network(net["Id"])
                except docker.errors.APIError as exc:
                    if exc.status_code == 404:
                        continue
                    attached = self.client.api.inspect_network(net["Id"]).get("Containers")
                    for container in attached or {}:
                        self.client.api.disconnect_container_from_network(
                            container, net["Id"], force=True)
                    self.client.api.remove_network(net["Id"])
        except docker.errors.NotFound:
            pass
        except docker.errors.DockerException as exc:
            raise ServiceError(f"cannot remove network {name}: {exc}") from exc

    def apps_with_networks(self) -> set[str]:
        """Apps that have a network of this instance: networks labelled with this
        instance and an app, whose name is the one ``name(app)`` gives (a network someone
        else made with copied labels is not ours; the build network has no app label)."""
        try:
            found = self.client.api.networks(
                filters={"label": [f"{LABEL}.instance={self.instance}", f"{LABEL}.app"]})
        except docker.errors.DockerException as exc:
            raise ServiceError(f"Docker is unavailable: {exc}") from exc
        apps = set()
        for net in found:
            labels = net.get("Labels") or {}
            app = labels.get(f"{LABEL}.app", "")
            if labels.get(f"{LABEL}.instance") == self.instance and app \
                    and net.get("Name") == self.name(app):
                apps.add(app)
        return apps

    def remove_if_unused(self, app: str) -> bool:
        """Remove the app's network if no container is attached to it (a leftover of an
        app destroyed outside ``apps:destroy``); True if it was removed. Unlike
        ``remove``, a container still attached keeps the network: Docker refuses to
        remove a network with endpoints, so one attached meanwhile wins the race."""
        name = self.name(app)
        self.forget(app)
        removed = False
        try:
            for net in self._find(name):
                if self.client.api.inspect_network(net["Id"]).get("Containers"):
                    continue
                try:
                    self.client.api.remove_network(net["Id"])
                    removed = True
                    log.info("network %s: removed (no container on it)", name)
                except docker.errors.APIError as exc:
                    if exc.status_code not in (403, 404, 409):  # in use now, or gone
                        raise
        except docker.errors.NotFound:
            pass
        except docker.errors.DockerException as exc:
            raise ServiceError(f"cannot remove network {name}: {exc}") from exc
        return removed
