"""``gitpaas.router.run``: worker processes on one SO_REUSEPORT port, clean stop on SIGTERM."""

from __future__ import annotations

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
    env = dict(
        os.environ, PYTHONPATH=str(ROOT), GITPAAS_HTTP_LISTEN=f"127.0.0.1:{port}",
        GITPAAS_REDIS_URL=redis_url, GITPAAS_INSTANCE=instance, GITPAAS_DATA_DIR=str(tmp_path),
        GITPAAS_ROUTER_WORKERS=str(workers), GITPAAS_ROUTER_ADMIN_LISTEN=f"127.0.0.1:{admin}",
    )
    with backends("a") as (a,):
        set_route(redis_url, instance, "run.example.com", a.url)
        proc = subprocess.Popen([sys.executable, "-m", "gitpaas.router"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
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
        stderr = proc.stderr.read().decode() if proc.stderr else ""
        assert "Traceback" not in stderr, stderr
