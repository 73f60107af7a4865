"""Shared pieces of the swarm end-to-end tests: a ``gitpaas serve`` with ``runtime: swarm``
against a three-node swarm of node containers, the test app, and a bounded load loop."""

from __future__ import annotations

import http.client
import json
import shutil
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from gitpaas.registry import HOST_CERTS_DIR
from tests.harness import free_port, serving
from tests.swarmkit import swarm_cluster

# Each replica writes its DYNO, its hostname and a config var into the page it serves.
PAGE = 'echo "$DYNO $(hostname) ${GREETING:-none}" > /www/index.html'


def swarm_app(image: str, version: str = "1") -> dict[str, str]:
    """A busybox httpd app whose page names the replica that answered."""
    cmd = json.dumps(["/bin/sh", "-c", f"{PAGE} && exec httpd -f -p 5000 -h /www"])
    return {"Dockerfile": f"FROM {image}\nRUN echo {version} > /version\nCMD {cmd}\n"}


@contextmanager
def swarm_serving(root: Path, redis_url: str, docker_client):
    """A three-node swarm and a server deploying onto it (its registry on the test
    bridge's gateway, trusted by the nodes); everything removed afterwards."""
    with swarm_cluster(docker_client, 3) as cluster:
        listen = f"{cluster.gateway}:{free_port()}"
        env = {"GITPAAS_RUNTIME": "swarm",
               "GITPAAS_SWARM_DOCKER_URL": cluster.manager.docker_url,
               "GITPAAS_REGISTRY_LISTEN": listen, "GITPAAS_HEALTH_TIMEOUT": "60",
               "GITPAAS_RECONCILE_INTERVAL": "1", "GITPAAS_ROUTER_CONNECT_TIMEOUT": "1",
               "GITPAAS_ROUTER_DEAD_TTL": "5", "GITPAAS_BACKUP_SCHEDULE": "off",
               "GITPAAS_BACKUP_REPO": str(root / "restic-repo")}
        try:
            with serving(root, redis_url, docker_client, "s", env) as srv:
                ca = srv.data_dir / "registry" / "tls" / "ca.crt"
                cluster.trust_ca(listen, ca.read_bytes())
                srv.cluster = cluster  # type: ignore[attr-defined]
                srv.registry = listen  # type: ignore[attr-defined]
                yield srv
        finally:
            shutil.rmtree(HOST_CERTS_DIR / listen, ignore_errors=True)


def web_tasks(srv, app: str) -> list[dict]:
    """The running tasks of the app's current web service, from the manager."""
    client = srv.cluster.manager.client
    services = [s for s in client.api.services(
        filters={"label": [f"gitpaas.instance={srv.instance}", f"gitpaas.app={app}",
                           "gitpaas.process=web"]})]
    if not services:
        return []
    newest = max(services, key=lambda s: int(s["Spec"]["Labels"]["gitpaas.release"]))
    return [t for t in client.api.tasks(filters={"service": newest["Spec"]["Name"]})
            if t["DesiredState"] == "running" and t["Status"]["State"] == "running"]


def node_of(srv, task: dict) -> str:
    client = srv.cluster.manager.client
    return client.api.inspect_node(task["NodeID"])["Description"]["Hostname"]


class Load(threading.Thread):
    """GETs through the edge, one after another, until stopped (bounded in count and
    time); every answer that is not 200 counts as failed."""

    def __init__(self, srv, host: str, limit: int = 5000, seconds: float = 240) -> None:
        super().__init__(daemon=True)
        self.srv, self.host, self.limit, self.seconds = srv, host, limit, seconds
        self.stop = threading.Event()
        self.ok = 0
        self.failed: list[str] = []
        self.bodies: list[str] = []

    def run(self) -> None:
        deadline = time.monotonic() + self.seconds
        while not self.stop.is_set() and self.ok + len(self.failed) < self.limit \
                and time.monotonic() < deadline:
            conn = http.client.HTTPConnection("127.0.0.1", self.srv.http_port, timeout=30)
            try:
                conn.request("GET", "/", headers={"Host": self.host})
                resp = conn.getresponse()
                body = resp.read().decode("utf-8", "replace")
                if resp.status == 200:
                    self.ok += 1
                    self.bodies.append(body)
                else:
                    self.failed.append(f"{resp.status} {body[:80]}")
            except (OSError, http.client.HTTPException) as exc:
                self.failed.append(repr(exc))
            finally:
                conn.close()
            time.sleep(0.02)

    def finish(self) -> Load:
        self.stop.set()
        self.join(60)
        return self


