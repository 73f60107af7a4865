"""Issue 7, point 10: ``gitpaas serve`` killed with SIGKILL at each stage of a deploy.

A separate ``gitpaas router`` serves the app all along. After a restart (whose start-up
reconcile repairs Docker and Redis) exactly one release serves, no request failed, no
orphan container is left, the app's lock is free again and the interrupted release is
marked failed.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import threading
import time

import pytest

from gitpaas.faults import STAGES
from tests.conftest import unique
from tests.e2e.test_push import httpd_app
from tests.harness import GITPAAS, Server, commit_files, make_repo, wait_for

pytestmark = pytest.mark.timeout(600)


class Load(threading.Thread):
    """GETs through the router, alternating keep-alive and fresh connections."""

    def __init__(self, port: int, host: str) -> None:
        super().__init__(daemon=True)
        self.port, self.host = port, host
        self.stop = threading.Event()
        self.bodies: dict[str, int] = {}
        self.failures: list[str] = []

    def _one(self, conn: http.client.HTTPConnection) -> None:
        conn.request("GET", "/", headers={"Host": self.host})
        resp = conn.getresponse()
        body = resp.read().decode()
        if resp.status != 200:
            self.failures.append(f"{resp.status} {body[:80]}")
        self.bodies[body] = self.bodies.get(body, 0) + 1

    def run(self) -> None:
        keep = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        n = 0
        while not self.stop.is_set():
            n += 1
            fresh = n % 2 == 0
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10) if fresh \
                else keep
            try:
                self._one(conn)
            except (OSError, http.client.HTTPException) as exc:
                self.failures.append(repr(exc))
                keep.close()
            finally:
                if fresh:
                    conn.close()
            time.sleep(0.01)
        keep.close()

    @property
    def total(self) -> int:
        return sum(self.bodies.values())


@pytest.fixture
def crash_server(tmp_path, redis_url, docker_client, clients):
    srv = Server(root=tmp_path, instance=unique("k"), redis_url=redis_url, router=False,
                 extra_env={"GITPAAS_RECONCILE_INTERVAL": "1"})
    srv.admin_key = srv.add_key("admin")
    srv.start()
    router = subprocess.Popen([GITPAAS, "router"], env=srv.env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    yield srv
    router.terminate()
    router.wait(10)
    srv.cleanup(docker_client)
    import redis

    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match=f"{srv.instance}:*", count=1000):
        client.delete(key)
    client.close()


def start_with_fault(srv: Server, fault: str | None) -> None:
    """Start the (stopped) server, pausing deploys at ``fault`` if given."""
    if fault:
        srv.extra_env["GITPAAS_FAULT_PAUSE"] = f"{fault}:120"
    else:
        srv.extra_env.pop("GITPAAS_FAULT_PAUSE", None)
    srv.start()


def app_containers(docker_client, srv: Server, app: str) -> list[str]:
    label = [f"gitpaas.instance={srv.instance}", f"gitpaas.app={app}"]
    return sorted(c.name for c in docker_client.containers.list(all=True,
                                                                 filters={"label": label}))


@pytest.mark.parametrize("stage", STAGES)
def test_sigkill_at_each_stage(crash_server, busybox_image, tmp_path, docker_client, stage):
    srv, app = crash_server, "crash"
    repo = make_repo(tmp_path / app, httpd_app(busybox_image, "v1\n"))
    assert srv.push(repo, app).returncode == 0
    load = Load(srv.http_port, srv.host(app))
    load.start()
    wait_for(lambda: load.total > 5, 10, "the router does not serve v1")
    srv.stop()
    start_with_fault(srv, stage)
    commit_files(repo, {"index.html": "v2\n"}, "v2")
    pusher = threading.Thread(target=srv.push, args=(repo, app))
    pusher.start()
    wait_for(lambda: f"fault point {stage} reached" in srv.log(), 60,
             f"the deploy never reached {stage}")
    srv.kill()
    pusher.join(60)
    start_with_fault(srv, None)  # the start-up reconcile repairs what the kill left
    live = "v2\n" if stage == "retire" else "v1\n"
    version = 2 if stage == "retire" else 1
    want = [f"{srv.instance}.{app}.v{version}.web.1"]
    wait_for(lambda: app_containers(docker_client, srv, app) == want, 30,
             f"containers left: {app_containers(docker_client, srv, app)}")
    served = load.total
    wait_for(lambda: load.total >= served + 5, 20, "requests on the repaired state")
    load.stop.set()
    load.join(15)
    assert load.failures == [], load.failures[:5]
    assert srv.get(srv.host(app)) == (200, live)
    releases = srv.gitpaas("releases", app, "--json")
    assert releases.returncode == 0, releases.stderr
    statuses = {r["version"]: r["status"] for r in json.loads(releases.stdout)}
    if stage in ("start", "check", "swap"):
        assert statuses[2] == "failed", statuses
    assert "pending" not in statuses.values(), statuses
    # the lock is free: the next push deploys
    commit_files(repo, {"index.html": "v3\n"}, "v3")
    again = srv.push(repo, app)
    assert again.returncode == 0, again.stderr
    assert srv.get(srv.host(app)) == (200, "v3\n")
    assert os.path.exists(srv.data_dir / "locks" / f"{app}.lock")
