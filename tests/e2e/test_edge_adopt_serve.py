"""An upgrade's edge change reaches the running nginx without a restart: ``gitpaas serve``
started again (scripts/upgrade without systemd) and ``gitpaas router`` sent SIGHUP
(``systemctl reload gitpaas-router``, scripts/upgrade with systemd) adopt nginx and reload
it when what they render differs from what it loaded; same master, no failed request."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from tests.conftest import unique
from tests.e2e.test_systemd import exec_start
from tests.harness import Server, free_port
from tests.integration.routerkit import backends, get, set_route
from tests.integration.test_edge_adopt import FreshLoad, wait_workers, workers

pytestmark = pytest.mark.timeout(300)
HOST = "adopt.example.com"


def _nginx(srv: Server) -> int:
    return int((srv.data_dir / "edge" / "nginx.pid").read_text())


def _wait_serving(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if get(port, HOST)[0] == 200:
                return
        except OSError:
            pass
        assert time.monotonic() < deadline, "the edge does not serve"
        time.sleep(0.1)


def _load_until(port: int, done, timeout: float = 30.0) -> FreshLoad:
    """A bounded load while ``done()`` is false (then one more second)."""
    load = FreshLoad(port, HOST, seconds=timeout + 10)
    load.start()
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(1.0)
    load.stop.set()
    load.join(30)
    return load


def test_serve_started_again_reloads_a_changed_edge_config(tmp_path, redis_url, docker_client):
    srv = Server(root=tmp_path, instance=unique("g"), redis_url=redis_url)
    with backends("a") as (a,):
        try:
            srv.admin_key = srv.add_key("admin")
            srv.start()
            set_route(redis_url, srv.instance, HOST, a.url)
            _wait_serving(srv.http_port)
            nginx = _nginx(srv)
            old = frozenset(wait_workers(nginx, 1))
            srv.stop()
            (srv.data_dir / "gitpaas.yaml").write_text("router_workers: 2\n")
            load = FreshLoad(srv.http_port, HOST, seconds=60)
            load.start()
            srv.start()
            new = wait_workers(nginx, 2, old)
            time.sleep(1.0)
            load.stop.set()
            load.join(30)
            assert _nginx(srv) == nginx  # adopted and reloaded, not restarted
            assert load.failures == [] and load.ok >= 10, (load.failures[:5], load.ok)
            assert "config or Lua changed: reloaded" in srv.log()
            # started again with nothing changed: nginx is not signalled
            srv.stop()
            srv.start()
            time.sleep(1.0)
            assert _nginx(srv) == nginx and workers(nginx) == new
        finally:
            srv.cleanup(docker_client)


def test_router_sighup_runs_the_installed_code_which_reloads_nginx(tmp_path, redis_url,
                                                                    docker_client):
    srv = Server(root=tmp_path, instance=unique("g"), redis_url=redis_url,
                 http_port=free_port(), ssh_port=free_port())
    srv.data_dir.mkdir(parents=True)
    log = open(tmp_path / "router.log", "ab")  # noqa: SIM115 - closed below
    router = subprocess.Popen(exec_start("gitpaas-router.service"), env=srv.env,
                              stdout=log, stderr=subprocess.STDOUT)
    with backends("a") as (a,):
        try:
            set_route(redis_url, srv.instance, HOST, a.url)
            _wait_serving(srv.http_port)
            nginx = _nginx(srv)
            old = frozenset(wait_workers(nginx, 1))
            (srv.data_dir / "gitpaas.yaml").write_text("router_workers: 2\n")
            os.kill(router.pid, signal.SIGHUP)  # systemctl reload gitpaas-router
            load = _load_until(srv.http_port, lambda: len(workers(nginx)) == 2
                               and not workers(nginx) & old)
            assert router.poll() is None  # the same process (systemd's main pid), re-run
            assert _nginx(srv) == nginx
            assert load.failures == [] and load.ok > 10, (load.failures[:5], load.ok)
            text = (tmp_path / "router.log").read_text()
            assert "SIGHUP: running the installed gitpaas again" in text
            assert "config or Lua changed: reloaded" in text
        finally:
            router.terminate()
            router.wait(10)
            log.close()
            srv.cleanup(docker_client)
