"""``gitpaas router``: the edge alone (an extra host sharing the Redis). It starts nginx
with ``router_workers`` workers and supervises it; nginx outlives it until ``edge:stop``."""

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

GITPAAS = str(Path(sys.executable).parent / "gitpaas")


@pytest.mark.parametrize("workers", [1, 2])
def test_router_command_serves_and_outlives_itself(redis_url, instance, tmp_path, workers):
    port, admin = free_port(), free_port()
    env = dict(os.environ, GITPAAS_HTTP_LISTEN=f"127.0.0.1:{port}", GITPAAS_REDIS_URL=redis_url,
               GITPAAS_INSTANCE=instance, GITPAAS_DATA_DIR=str(tmp_path),
               GITPAAS_ROUTER_WORKERS=str(workers),
               GITPAAS_ROUTER_ADMIN_LISTEN=f"127.0.0.1:{admin}")
    with backends("a") as (a,):
        set_route(redis_url, instance, "run.example.com", a.url)
        proc = subprocess.Popen([GITPAAS, "router"], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            while b"edge http port" not in (line := proc.stdout.readline()):
                assert line, "gitpaas router exited"
            status, _, body = get(port, "run.example.com")
            assert status == 200 and backend_of(body) == "a"
            pid = int((tmp_path / "edge" / "nginx.pid").read_text())
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            assert len(children) == workers
            with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5) as r:
                assert "gitpaas_edge_requests_total" in r.read().decode()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(20) == 0
            assert get(port, "run.example.com")[0] == 200  # nginx keeps serving
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            result = subprocess.run([GITPAAS, "edge:stop"], env=env, capture_output=True,
                                    text=True, timeout=60)
        assert "edge stopped" in result.stdout, result.stderr
        time.sleep(0.1)
        with pytest.raises(OSError):
            get(port, "run.example.com")
