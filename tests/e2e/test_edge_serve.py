"""The edge outlives ``gitpaas serve``: a restart or a SIGKILL of serve costs no request;
serve adopts the running nginx, restarts it if it dies, and ``edge:stop`` stops it."""

from __future__ import annotations

import os
import signal
import socket
import time

import pytest

from tests.conftest import unique
from tests.harness import Server
from tests.integration.routerkit import backends, get, set_route
from tests.integration.test_edge_faults import Load

pytestmark = pytest.mark.timeout(300)
HOST = "edge.example.com"


def _pid(srv: Server) -> int:
    return int((srv.data_dir / "edge" / "nginx.pid").read_text())


def test_serve_restart_and_crash_cost_no_request(tmp_path, redis_url, docker_client):
    srv = Server(root=tmp_path, instance=unique("g"), redis_url=redis_url)
    with backends("a") as (a,):
        try:
            srv.admin_key = srv.add_key("admin")
            srv.start()
            set_route(redis_url, srv.instance, HOST, a.url)
            assert get(srv.http_port, HOST)[0] == 200
            nginx = _pid(srv)
            load = Load(srv.http_port, HOST, seconds=60, limit=100_000)
            load.start()
            time.sleep(0.5)
            srv.stop()  # SIGTERM
            time.sleep(0.5)
            srv.start()
            time.sleep(0.5)
            srv.kill()  # SIGKILL
            time.sleep(0.5)
            srv.start()
            time.sleep(0.5)
            load.stop.set()
            load.join(30)
            assert load.failures == []
            assert load.ok > 50
            assert _pid(srv) == nginx  # adopted, not restarted
            # nginx itself killed: serve starts it again within seconds
            os.kill(nginx, signal.SIGKILL)
            deadline = time.monotonic() + 15
            while True:
                try:
                    if get(srv.http_port, HOST)[0] == 200 and _pid(srv) != nginx:
                        break
                except OSError:
                    pass
                assert time.monotonic() < deadline, srv.log()[-2000:]
                time.sleep(0.2)
            srv.stop()
            assert get(srv.http_port, HOST)[0] == 200  # serve is down, the edge is not
            result = srv.gitpaas("edge:stop")
            assert result.returncode == 0 and "edge stopped" in result.stdout
            with pytest.raises(OSError):
                socket.create_connection(("127.0.0.1", srv.http_port), 1).close()
        finally:
            srv.cleanup(docker_client)
