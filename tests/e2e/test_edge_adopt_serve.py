"""An upgrade's edge change reaches the running nginx without a restart: ``gitpaas serve``
started again (scripts/upgrade without systemd) and ``gitpaas router`` sent SIGHUP
(``systemctl reload gitpaas-router``, scripts/upgrade with systemd) adopt nginx and reload
it when what they render differs from what it loaded; same master, no failed request."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


def _hup_blocked(pid: int) -> bool:
    """Whether the main thread of ``pid`` blocks SIGHUP (its mask, /proc/<pid>/status)."""
    status = Path(f"/proc/{pid}/status").read_text()
    mask = next(x for x in status.splitlines() if x.startswith("SigBlk:")).split()[1]
    return bool(int(mask, 16) & (1 << (signal.SIGHUP - 1)))


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


@contextlib.contextmanager
def _router_unit(tmp_path: Path, redis_url: str, docker_client,
                 **popen: Any) -> Iterator[tuple[Server, subprocess.Popen]]:
    """``gitpaas router`` run by the systemd unit's own command (its output in
    tmp_path/router.log), serving HOST from one backend; stopped and cleaned up after."""
    srv = Server(root=tmp_path, instance=unique("g"), redis_url=redis_url,
                 http_port=free_port(), ssh_port=free_port())
    srv.data_dir.mkdir(parents=True)
    with open(tmp_path / "router.log", "ab") as log, backends("a") as (a,):
        router = subprocess.Popen(exec_start("gitpaas-router.service"), env=srv.env,
                                  stdout=log, stderr=subprocess.STDOUT, **popen)
        try:
            set_route(redis_url, srv.instance, HOST, a.url)
            _wait_serving(srv.http_port)
            yield srv, router
        finally:
            if router.poll() is None:
                router.terminate()
                router.wait(10)
            srv.cleanup(docker_client)


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
    with _router_unit(tmp_path, redis_url, docker_client) as (srv, router):
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


def test_router_survives_sighups_in_quick_succession(tmp_path, redis_url, docker_client):
    """``systemctl reload`` twice in a row: a SIGHUP that comes while the re-run Python
    starts (before it has a handler) waits, blocked, instead of ending the router (rc 129,
    a clean exit to systemd, which then neither restarts it nor keeps its nginx)."""
    with _router_unit(tmp_path, redis_url, docker_client) as (srv, router):
        nginx = _nginx(srv)
        old = frozenset(wait_workers(nginx, 1))
        (srv.data_dir / "gitpaas.yaml").write_text("router_workers: 2\n")
        load = FreshLoad(srv.http_port, HOST, seconds=60)
        load.start()
        for _ in range(8):  # over the time a re-run takes to install its handler
            os.kill(router.pid, signal.SIGHUP)
            time.sleep(0.03)
        assert router.poll() is None
        deadline = time.monotonic() + 30
        text, seen = "", ""
        while True:  # settled: the last re-run is up (its edge adopted and reloaded)
            assert router.poll() is None, router.returncode
            text = (tmp_path / "router.log").read_text()
            last = text.rfind("SIGHUP: running the installed gitpaas again")
            if last >= 0 and "edge http port" in text[last:] and text == seen:
                break
            assert time.monotonic() < deadline, text[-2000:]
            seen = text
            time.sleep(1.0)
        runs = text.count("SIGHUP: running the installed gitpaas again")
        assert 1 <= runs <= 8, text[-2000:]
        wait_workers(nginx, 2, old)
        time.sleep(1.0)
        load.stop.set()
        load.join(30)
        assert router.poll() is None
        assert _nginx(srv) == nginx  # the same master throughout, reloaded
        assert load.failures == [] and load.ok > 10, (load.failures[:5], load.ok)
        assert "config or Lua changed: reloaded" in text
        assert not _hup_blocked(router.pid)  # the next reload is handled
        router.send_signal(signal.SIGTERM)
        assert router.wait(20) == 0


def test_a_router_started_with_sighup_blocked_unblocks_it(tmp_path, redis_url, docker_client):
    """A fresh ``gitpaas router`` whose parent blocked SIGHUP (the mask is inherited)
    handles it once its handler is installed, like a re-run one."""
    with _router_unit(  # noqa: PLW1509 - a mask only, no lock taken
        tmp_path, redis_url, docker_client,
        preexec_fn=lambda: signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP}),
    ) as (_, router):
        assert not _hup_blocked(router.pid)
        os.kill(router.pid, signal.SIGHUP)
        deadline = time.monotonic() + 30
        while "edge http port" not in (text := (tmp_path / "router.log").read_text()
                                       ).partition("SIGHUP: running the installed")[2]:
            assert router.poll() is None and time.monotonic() < deadline, text[-2000:]
            time.sleep(0.1)
