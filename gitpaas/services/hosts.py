"""The hosts service (admins, ``runtime: swarm``): the swarm's nodes, joining one, and
draining one with no failed request (docs/scaling.md)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import UserError
from ..runtime.swarm import NODE_DAEMON_CONFIG, Nodes, SwarmRuntime
from .access import Service

if TYPE_CHECKING:
    from ..platform import Platform

DRAIN_WAIT = 120.0  # seconds a drain waits for the node's replicas to move


@dataclass(frozen=True)
class Joining:
    """What a new node needs: the registry's address, its CA, its dockerd's
    ``daemon.json`` (no-new-privileges for every container) and the join command."""

    registry: str
    ca: str
    join: str
    daemon_json: str


class Hosts(Service):
    """The swarm's nodes as an admin ``key`` sees and changes them (the command registry
    lets admins only in; each change is recorded in the audit trail)."""

    def nodes(self) -> Nodes:
        """The swarm's ``Nodes``, or a clear error on one host."""
        runtime: object = self.platform.runtime
        if not isinstance(runtime, SwarmRuntime):
            raise UserError("this server runs on one host (runtime: docker); see"
                            " docs/scaling.md to add hosts")
        return Nodes(runtime)

    def list(self) -> list[dict[str, Any]]:
        """Each node: hostname, role, state, availability, address, what runs there."""
        return self.nodes().list()

    def joining(self) -> Joining:
        join, _ = self.nodes().join_command()
        from ..registry import RegistryFiles

        files = RegistryFiles(self.platform.settings)
        ca = files.ca_cert.read_text() if files.ca_cert.exists() else ""
        return Joining(files.listen, ca, join, json.dumps(NODE_DAEMON_CONFIG))

    def drain(self, name: str, started: Callable[[str], None]) -> bool:
        """Take ``name``'s replicas off the routes, then let Swarm move them; True when
        none is left there within ``DRAIN_WAIT`` (``started`` is told the hostname)."""
        nodes = self.nodes()
        node = nodes.find(name)
        started(node["hostname"])
        self._unroute(node["address"])
        nodes.set_availability(name, "drain")
        self.access.record("hosts:drain", None, node["hostname"])
        deadline = time.monotonic() + DRAIN_WAIT
        while time.monotonic() < deadline:
            if not nodes.find(name)["runs"]:
                return True
            time.sleep(0.5)
        return False

    def activate(self, name: str) -> str:
        """Let ``name`` run replicas again; its hostname."""
        node = self.nodes().set_availability(name, "active")
        self.access.record("hosts:activate", None, node["hostname"])
        return str(node["hostname"])

    def _unroute(self, address: str) -> None:
        """Take the node's replicas off every app's routes before Swarm stops them."""
        platform = self.platform
        apps = {t.app for t in platform.runtime.list()
                if t.process == "web" and t.host == address}
        for app in sorted(apps):
            for host, frontend in platform.routes.get_many(platform.hosts(app)).items():
                keep = [b for b in frontend[1:] if f"//{address}:" not in b]
                if keep and len(keep) < len(frontend) - 1:
                    platform.routes.swap(app, [host], keep)


def storage_node(platform: Platform, app: str) -> str | None:
    """``runtime: swarm``: the node that holds the app's storage (None: none, or one host)."""
    runtime: object = platform.runtime
    if not isinstance(runtime, SwarmRuntime):
        return None
    return runtime.storage_node(app)
