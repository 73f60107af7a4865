"""``gitpaas.router.run``: worker processes on one SO_REUSEPORT port, clean stop on SIGTERM."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from .routerkit import backend_of, backends, free_port, get, set_route

ROOT = Path(__file__).resolve().parents[2]


def _is_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _metrics(port: int) -> str:
    """The /metrics page on ``port``, waiting up to 30 s for the worker to be up."""
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                return resp.read().decode()
        except OSError:
            assert time.monotonic() < deadline, f"no metrics on port {port}"
            time.sleep(0.05)


@pytest.mark.parametrize("workers", [1, 2])
def test_run_serves_and_stops_on_sigterm(redis_url, instance, tmp_path, workers):
    port, admin = free_port(), free_port()
    while workers > 1 and not _is_free(admin + 1):
        admin = free_port()
    env = dict(
        os.environ, PYTHONPATH=str(ROOT), GITPAAS_HTTP_LISTEN=f"127.0.0.1:{port}",
        GITPAAS_REDIS_URL=redis_url, GITPAAS_INSTANCE=instance, GITPAAS_DATA_DIR=str(tmp_path),
        GITPAAS_ROUTER_WORKERS=str(workers), GITPAAS_ROUTER_ADMIN_LISTEN=f"127.0.0.1:{admin}",
    )
    with backends("a") as (a,):
        set_route(redis_url, instance, "run.example.com", a.url)
        proc = subprocess.Popen([sys.executable, "-m", "gitpaas.router"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    status, _, body = get(port, "run.example.com")
                    break
                except OSError:
                    assert time.monotonic() < deadline, "router did not start"
                    time.sleep(0.05)
            assert status == 200 and backend_of(body) == "a"
            for _ in range(20):
                assert get(port, "run.example.com")[0] == 200
            for i in range(workers):  # worker i serves /metrics on admin + i
                assert f'worker="{i}"' in _metrics(admin + i)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(20) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            with contextlib.suppress(ProcessLookupError):  # any worker left behind
                os.killpg(proc.pid, signal.SIGKILL)
        stderr = proc.stderr.read().decode() if proc.stderr else ""
        assert "Traceback" not in stderr, stderr


def test_workers_stop_when_the_parent_is_killed(redis_url, instance, tmp_path):
    port = free_port()
    env = dict(
        os.environ, PYTHONPATH=str(ROOT), GITPAAS_HTTP_LISTEN=f"127.0.0.1:{port}",
        GITPAAS_REDIS_URL=redis_url, GITPAAS_INSTANCE=instance, GITPAAS_DATA_DIR=str(tmp_path),
        GITPAAS_ROUTER_WORKERS="2",
    )
    proc = subprocess.Popen([sys.executable, "-m", "gitpaas.router"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        children: list[int] = []
        while len(children) < 2:
            assert time.monotonic() < deadline, "workers did not start"
            time.sleep(0.1)
            path = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
            children = [int(c) for c in path.read_text().split()]
        proc.kill()  # SIGKILL: nothing is passed on to the workers
        proc.wait()
        deadline = time.monotonic() + 10
        while any(Path(f"/proc/{c}").exists() for c in children):
            assert time.monotonic() < deadline, "orphaned workers kept running"
            time.sleep(0.1)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
