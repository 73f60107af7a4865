"""Issue 7, point 12: Redis and MariaDB restarted under gitpaas.

The router's side of a Redis outage (cached routes keep serving, it reconnects) is in
``test_router_cache.py::test_redis_outage_and_return``. Here: a deploy during a Redis
outage fails cleanly and can be retried, the reconciler rewrites the routes a restarted
(empty) Redis lost, and state on MySQL survives a MariaDB restart with reconnection.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from gitpaas import settings as settings_mod
from gitpaas.errors import ServiceError
from gitpaas.platform import Platform
from gitpaas.reconcile import Reconciler
from gitpaas.store import open_store
from tests.conftest import require
from tests.integration.routerkit import free_port
from tests.integration.test_router_cache import throwaway_redis  # noqa: F401 - fixture

pytestmark = pytest.mark.timeout(300)
WEB = "httpd -f -p 5000 -h /tmp"


@pytest.fixture
def platform_on(tmp_path, instance, docker_client, busybox_image, throwaway_redis):  # noqa: F811
    url, start, stop = throwaway_redis
    p = Platform(settings_mod.load({
        "data_dir": tmp_path / "data", "instance": instance, "redis_url": url,
        "stop_timeout": 1, "health_timeout": 20, "default_memory": ""}, environ={}))
    p.__dict__["docker"] = docker_client
    yield p, start, stop
    for c in docker_client.containers.list(all=True,
                                           filters={"label": f"gitpaas.instance={instance}"}):
        c.remove(force=True)


def test_deploy_during_a_redis_outage_fails_cleanly_and_can_be_retried(platform_on,
                                                                       busybox_image):
    platform, start, stop = platform_on
    store, deployer = platform.store, platform.deployer
    store.create_app("shop", "admin", "main")
    v1 = store.add_release("shop", busybox_image, "a" * 40, {}, {"web": WEB}, "v1", "admin")
    deployer.start_release("shop", v1, lambda _: None)
    v1_containers = [c.name for c in platform.runtime.list("shop")]
    stop()
    lines: list[str] = []
    with pytest.raises(ServiceError, match="cannot (update|read) routes"):
        deployer.deploy_release("shop", store.current_release("shop"), {"K": "v"}, "v2",
                                "admin", lines.append)
    assert any("routes" in line and "Redis" in line for line in lines)
    assert store.get_release("shop", 2).status == "failed"
    assert store.current_release("shop").version == 1
    assert [c.name for c in platform.runtime.list("shop")] == v1_containers
    start()  # an empty Redis: the routes are gone
    assert platform.routes.get("shop.paas.localhost") == []
    report = Reconciler(platform).run_once()
    assert report.routed == ["shop.paas.localhost"]
    assert platform.routes.get("shop.paas.localhost")[0] == "shop"
    retried = deployer.deploy_release("shop", store.current_release("shop"), {"K": "v"}, "v3",
                                      "admin", lambda _: None)
    deployer.wait_retired()
    assert store.current_release("shop").version == retried.version == 3
    assert [c.release for c in platform.runtime.list("shop")] == [3]


class ThrowawayMariaDB:
    """A private mariadbd (own datadir, socket and port, root without a password)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={root / 'data'}",
                        "--user=root", "--auth-root-authentication-method=normal",
                        "--skip-test-db"], check=True, capture_output=True, timeout=120)

    @property
    def url(self) -> str:
        return f"mysql://root@127.0.0.1:{self.port}/gitpaas"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["mariadbd", "--no-defaults", f"--datadir={self.root / 'data'}",
             f"--socket={self.root / 'sock'}", f"--port={self.port}",
             "--bind-address=127.0.0.1", "--user=root", f"--pid-file={self.root / 'pid'}",
             "--skip-log-bin", "--innodb-buffer-pool-size=16M",
             f"--log-error={self.root / 'err.log'}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import pymysql

        deadline = time.monotonic() + 30
        while True:
            try:
                pymysql.connect(host="127.0.0.1", port=self.port, user="root").close()
                return
            except pymysql.MySQLError:
                assert time.monotonic() < deadline, (self.root / "err.log").read_text()[-2000:]
                time.sleep(0.2)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)


@pytest.fixture
def mariadb(tmp_path):
    require(shutil.which("mariadbd") is not None and shutil.which("mariadb-install-db")
            is not None, "mariadbd and mariadb-install-db")
    db = ThrowawayMariaDB(tmp_path / "mariadb")
    db.start()
    import pymysql

    conn = pymysql.connect(host="127.0.0.1", port=db.port, user="root")
    conn.cursor().execute("CREATE DATABASE gitpaas CHARACTER SET utf8mb4")
    conn.close()
    yield db
    db.stop()


def test_state_on_mysql_survives_a_mariadb_restart(mariadb, tmp_path):
    store = open_store(mariadb.url, tmp_path / "secret.key")
    store.create_app("shop", "admin", "main")
    store.set_config("shop", {"TOKEN": "s3cret"})
    assert store.get_config("shop") == {"TOKEN": "s3cret"}
    mariadb.stop()
    with pytest.raises(ServiceError, match="state store"):
        store.get_config("shop")
    mariadb.start()
    # The same Store, on this thread and a fresh one, reconnects by itself.
    assert store.get_config("shop") == {"TOKEN": "s3cret"}
    seen: list[object] = []
    worker = threading.Thread(target=lambda: seen.append(store.get_app("shop").owner))
    worker.start()
    worker.join(30)
    assert seen == ["admin"]
    store.set_config("shop", {"MORE": "1"})
    assert store.get_config("shop") == {"MORE": "1", "TOKEN": "s3cret"}
    store.close()


def test_a_thread_that_held_a_connection_across_the_restart_recovers(mariadb, tmp_path):
    store = open_store(mariadb.url, tmp_path / "secret.key")
    ready, go, results = threading.Event(), threading.Event(), []

    def long_lived():
        store.create_app("blog", "admin", "main")  # this thread now has a connection
        ready.set()
        go.wait(60)
        results.append(store.get_app("blog").name)

    worker = threading.Thread(target=long_lived)
    worker.start()
    ready.wait(30)
    mariadb.stop()
    mariadb.start()
    go.set()
    worker.join(60)
    assert results == ["blog"]
