"""One user-defined bridge per app, with a subnet gitpaas picks itself (issue 11, 4).

Docker isolates user-defined bridges from each other (its DOCKER-ISOLATION chains), so an
app's containers reach no other app's. Docker's default address pools hold about 30
networks: a host with hundreds of apps would run out, so subnets come from the
``app_network_pool`` setting (a /16 carved into ``/app_network_prefix`` subnets), skipping
every subnet an existing Docker network or a host route already uses. dockerd's own
configuration is never touched.

Bridges are named ``gpa<hash>`` (Linux allows 15 characters), so a host firewall can
recognise app bridges (``-i gpa+``), e.g. to let them reach MariaDB.

Spares (issue 17, scale): Docker's network create grows with the networks on the host
(0.07 s with one app, 0.12 s with 200: each of its iptables-nft calls reads the whole
ruleset). ``gitpaas serve`` keeps ``app_network_spares`` networks made ahead (labelled
``gitpaas.spare``, named ``<instance>.spare_<hex>``: ``_`` is in no app name) and a new app
claims one in the store (``gp_app_networks``, keyed by the network: one app per network,
ever) instead of creating ``<instance>.<app>``. A claimed network keeps its name (Docker
cannot rename one or change its labels), so every user of an app's network asks ``name``.
A destroyed app's network is removed, never a spare again.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

import docker
import docker.errors
import docker.types

from ..errors import DeployError, ServiceError

LABEL = "gitpaas"
SPARE_LABEL = f"{LABEL}.spare"
SPARE_INFIX = "spare_"  # not in any app name (names.APP_RE)
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


class Claims(Protocol):
    """The store's record of which app has which spare network (``Store`` has these)."""

    def app_network(self, app: str) -> str | None: ...
    def claim_app_network(self, app: str, network: str) -> str | None: ...
    def claimed_networks(self) -> dict[str, str | None]: ...
    def forget_app_network(self, network: str) -> None: ...


class AppNetworks:
    """Creates, hands out and removes the per-app networks of one instance."""

    def __init__(self, client: docker.DockerClient, instance: str, pool: str,
                 prefix: int, claims: Callable[[], Claims] | None = None,
                 spares: int = 0) -> None:
        """``claims``: the store, opened on first use (e.g. ``lambda: platform.store``);
        without it no spare is claimed or made."""
        self.client = client
        self.instance = instance
        self.pool = Net(pool)
        self.prefix = prefix
        self._claims = claims
        self.spares = spares if claims is not None else 0
        self._lock = threading.Lock()
        self._fill_lock = threading.Lock()
        # Networks this object found or made: a deploy's starts need not list Docker's
        # networks again (one filtered listing per container, under the lock, and
        # dockerd's filtering grows with the number of networks). Forgotten on removal
        # here; a network removed behind our back makes a start fail with "network ...
        # not found", after which the caller ``forget``s it and ensures it again.
        self._known: set[str] = set()
        self._names: dict[str, str] = {}  # app -> its network, as last looked up
        self._wake = threading.Event()  # ``request_fill``: the filler thread makes spares
        self._short = True  # a spare was claimed since the last fill (or none made yet)

    @property
    def claims(self) -> Claims | None:
        """The store's claims, or None (no spares)."""
        return self._claims() if self._claims is not None else None

    def legacy_name(self, app: str) -> str:
        """The network an app that claimed no spare uses: ``<instance>.<app>``."""
        return f"{self.instance}.{app}"

    def name(self, app: str) -> str:
        """The app's network: the spare it claimed, else ``<instance>.<app>``."""
        found = self._names.get(app)
        if found is not None:
            return found
        claimed = self.claims.app_network(app) if self.claims is not None else None
        if claimed is None:
            return self.legacy_name(app)  # not kept: a claim may come
        self._names[app] = claimed
        return claimed

    def ensure(self, app: str, cached: bool = False) -> str:
        """The app's network: the one it has, else a spare it claims, else one created
        (``<instance>.<app>``); returns its name. ``cached``: trust an earlier ``ensure``
        of this object (see ``forget``)."""
        name = self._names.get(app)
        if cached and name is not None and name in self._known:  # no wait for another's
            return name
        with self._lock:  # parallel starts of one deploy: one creation
            name = self._names.get(app)
            if cached and name is not None and name in self._known:  # made meanwhile
                return name
            try:
                name = self._ensure(app)
            except docker.errors.DockerException as exc:
                raise ServiceError(f"Docker is unavailable: {exc}") from exc
            self._names[app] = name
            self._known.add(name)
        return name

    def _ensure(self, app: str) -> str:
        claimed = self.claims.app_network(app) if self.claims is not None else None
        if claimed is not None:
            if not self._find(claimed):  # removed behind our back: the same name again
                self._create(claimed, self._spare_labels())
            return claimed
        legacy = self.legacy_name(app)
        if self._find(legacy):
            return legacy
        spare = self._claim_spare(app)
        if spare is not None:
            return spare
        self._create(legacy, {f"{LABEL}.instance": self.instance, f"{LABEL}.app": app})
        return legacy

    def _claim_spare(self, app: str) -> str | None:
        """A spare network given to ``app`` (None: no spare ready). Only one no container
        (running, stopped or only created) is on; the store's claim is atomic (one app
        per network, ever)."""
        if self.claims is None or not self.spares:
            return None
        for name in self.spare_networks():
            # Any container on it, running or not (a created one joins at its start).
            if self.client.api.containers(all=True, filters={"network": name}):
                continue
            claimed = self.claims.claim_app_network(app, name)
            if claimed is not None:
                self._short = True
                log.info("network %s: claimed by %s", claimed, app)
                return claimed
        return None

    def spare_networks(self) -> list[str]:
        """The spares of this instance no app has claimed, oldest first."""
        if self.claims is None:
            return []
        found = self.client.api.networks(filters={"label": [
            f"{LABEL}.instance={self.instance}", SPARE_LABEL]})
        claimed = self.claims.claimed_networks()
        prefix = f"{self.instance}.{SPARE_INFIX}"
        return [n["Name"] for n in sorted(found, key=lambda n: n.get("Created", ""))
                if n.get("Name", "").startswith(prefix) and n["Name"] not in claimed
                and (n.get("Labels") or {}).get(f"{LABEL}.instance") == self.instance]

    def fill_spares(self) -> int:
        """Make spares until ``spares`` are ready; returns how many were made. One filler
        at a time in this process; a failure is logged (the next fill tries again)."""
        if not self.spares:
            return 0
        made = 0
        with self._fill_lock:
            try:
                missing = self.spares - len(self.spare_networks())
                for _ in range(max(0, missing)):
                    name = f"{self.instance}.{SPARE_INFIX}{uuid.uuid4().hex[:12]}"
                    self._create(name, self._spare_labels())
                    made += 1
            except (docker.errors.DockerException, DeployError, ServiceError) as exc:
                log.warning("cannot make a spare app network: %s", exc)
        return made

    def request_fill(self) -> None:
        """Wake the filler if a spare was claimed: a deploy calls this once its starts are
        done, so that the next create does not compete with them."""
        if self._short and self.spares:
            self._wake.set()

    def fill_loop(self, stop: threading.Event, interval: float = 60.0) -> None:
        """``gitpaas serve``'s filler: spares made now, after each ``request_fill`` and
        every ``interval`` seconds (a claim by another process), until ``stop``."""
        while not stop.is_set():
            self._short = False
            self.fill_spares()
            self._wake.wait(interval)
            self._wake.clear()

    def start_filling(self, interval: float = 60.0) -> threading.Event | None:
        """The filler in a daemon thread (None when spares are off: spares made while
        they were on are removed then); set the returned event to stop it."""
        if not self.spares:
            if self._claims is not None:
                try:
                    self.remove_spares()
                except (docker.errors.DockerException, ServiceError) as exc:
                    log.warning("cannot remove the spare app networks: %s", exc)
            return None
        stop = threading.Event()
        threading.Thread(target=self.fill_loop, args=(stop, interval), daemon=True,
                         name="network-spares").start()
        return stop

    def stop_filling(self, stop: threading.Event | None) -> None:
        """Stop the filler ``start_filling`` returned."""
        if stop is not None:
            stop.set()
            self._wake.set()

    def remove_spares(self) -> int:
        """Remove the spares no app claimed (tests; an admin turning spares off)."""
        removed = 0
        for name in self.spare_networks():
            try:
                self.client.api.remove_network(name)
                removed += 1
            except docker.errors.APIError as exc:
                if exc.status_code not in (403, 404, 409):
                    raise
        return removed

    def _spare_labels(self) -> dict[str, str]:
        return {f"{LABEL}.instance": self.instance, SPARE_LABEL: "1"}

    def forget(self, app: str) -> None:
        """The next ``ensure`` of ``app`` asks Docker (and the store) again."""
        with self._lock:
            name = self._names.pop(app, None)
            self._known.discard(self.legacy_name(app))
            if name is not None:
                self._known.discard(name)

    def _find(self, name: str) -> list[dict[str, Any]]:
        return find_network(self.client, name)

    def _create(self, name: str, labels: dict[str, str]) -> None:
        create_network(self.client, name, self.pool, self.prefix, bridge_name(name), labels)

    def _names_of(self, app: str) -> list[str]:
        """Every network ``app`` may have: the claimed one and ``<instance>.<app>``."""
        claimed = self.claims.app_network(app) if self.claims is not None else None
        return [n for n in (claimed, self.legacy_name(app)) if n is not None]

    def remove(self, app: str) -> None:
        """Remove the app's network; absent is fine. Containers still attached (a one-off
        that outlived its app) are disconnected first: the network dies with its app. A
        claimed spare's claim goes after it (the network is never a spare again)."""
        self.forget(app)
        for name in self._names_of(app):
            self._remove(name)
            if name != self.legacy_name(app) and self.claims is not None:
                self.claims.forget_app_network(name)

    def _remove(self, name: str) -> None:
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
        """Apps that have a ``<instance>.<app>`` network: networks labelled with this
        instance and an app, whose name is the one ``legacy_name(app)`` gives (a network
        someone else made with copied labels is not ours; the build network has no app
        label). Claimed spares: ``leftover_claims``."""
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
                    and net.get("Name") == self.legacy_name(app):
                apps.add(app)
        return apps

    def remove_leftover_claims(self) -> list[str]:
        """Claimed spares whose app is gone (a destroy that failed half-way), removed if
        no container is attached, their claims with them; returns their names."""
        if self.claims is None:
            return []
        removed = []
        for name, app in sorted(self.claims.claimed_networks().items()):
            if app is None and self._remove_unused(name) is not False:
                self.claims.forget_app_network(name)
                removed.append(name)
        return removed

    def remove_if_unused(self, app: str) -> bool:
        """Remove the app's network if no container is attached to it (a leftover of an
        app destroyed outside ``apps:destroy``, or of a failed first deploy); True if it
        was removed. Unlike ``remove``, a container still attached keeps the network:
        Docker refuses to remove a network with endpoints, so one attached meanwhile wins
        the race. A claimed spare removed loses its claim: never a spare again."""
        self.forget(app)
        removed = False
        for name in self._names_of(app):
            gone = self._remove_unused(name)
            if gone is not False and name != self.legacy_name(app) \
                    and self.claims is not None:
                self.claims.forget_app_network(name)
            removed = removed or bool(gone)
        return removed

    def _remove_unused(self, name: str) -> bool | None:
        """Remove network ``name`` unless a container is attached: True if removed, None
        if there was none, False if it stays (in use)."""
        result: bool | None = None
        try:
            for net in self._find(name):
                if self.client.api.inspect_network(net["Id"]).get("Containers"):
                    return False
                try:
                    self.client.api.remove_network(net["Id"])
                    result = True
                    log.info("network %s: removed (no container on it)", name)
                except docker.errors.APIError as exc:
                    if exc.status_code not in (403, 404, 409):  # in use now, or gone
                        raise
                    if exc.status_code != 404:
                        return False
        except docker.errors.NotFound:
            pass
        except docker.errors.DockerException as exc:
            raise ServiceError(f"cannot remove network {name}: {exc}") from exc
        return result
