"""Per-app edge settings (edge:set) reach the edge through Redis, without a reload."""

from __future__ import annotations

import http.client
import io
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gitpaas import settings as settings_mod
from gitpaas.cli import LOCAL_ADMIN
from gitpaas.commands.registry import Context, run_command
from gitpaas.platform import Platform
from tests.harness import wait_for

from .routerkit import backends, get, make_config, running_router

HOST = "shop.paas.localhost"


@pytest.fixture
def platform(tmp_path, instance, redis_url):
    p = Platform(settings_mod.load({"data_dir": tmp_path / "data", "instance": instance,
                                    "redis_url": redis_url}, environ={}))
    p.store.create_app("shop", "admin", "main")
    yield p
    p.routes.remove([HOST])
    p.routes.close()


def run(platform, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    ctx = Context(platform, LOCAL_ADMIN, io.BytesIO(), out.write, err.write, is_local=True)
    return run_command(ctx, list(argv)), out.getvalue(), err.getvalue()


def post(port: int, size: int) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", "/", body=b"x" * size, headers={"Host": HOST})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def test_body_size_timeouts_and_https_redirect(platform, redis_url, instance):
    config = make_config(redis_url, instance, https_listen=("127.0.0.1", 0))
    with backends("a") as (a,), running_router(config) as edge:
        platform.routes.swap("shop", [HOST], [a.url])
        assert post(edge.port, 5000) == 200
        code, _, err = run(platform, "edge:set", "shop", "client-max-body-size=4k",
                           "proxy-read-timeout=1")
        assert code == 0, err
        # through Redis and its publish: seconds at most, however loaded the machine
        wait_for(lambda: post(edge.port, 5000) == 413, timeout=5, what="the 413")
        assert post(edge.port, 4000) == 200
        code, out, _ = run(platform, "edge", "shop")
        assert "client-max-body-size: 4096" in out and "https-redirect: false (default)" in out
        assert run(platform, "edge:set", "shop", "https-redirect=true")[0] == 0
        wait_for(lambda: get(edge.port, HOST, "/x")[0] == 301, timeout=5, what="the redirect")
        status, headers, _ = get(edge.port, HOST, "/x")
        assert status == 301 and headers["Location"] == f"https://{HOST}:{edge.tls_port}/x"
        assert run(platform, "edge:set", "shop", "https-redirect=")[0] == 0
        wait_for(lambda: get(edge.port, HOST)[0] == 200, timeout=5, what="no redirect")
    # a backend slower than the app's read timeout: 504 after about 1 s
    release = threading.Event()

    class Slow(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_GET(self):
            release.wait(5)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with running_router(make_config(redis_url, instance)) as edge:
            platform.routes.swap("shop", [HOST], [f"http://127.0.0.1:{server.server_address[1]}"])
            began = time.monotonic()
            assert get(edge.port, HOST)[0] == 504
            assert time.monotonic() - began < 3
    finally:
        release.set()
        server.shutdown()
        server.server_close()


def test_bad_edge_settings_are_refused(platform):
    for arg in ("client-max-body-size=lots", "client-max-body-size=2g", "proxy-read-timeout=0",
                "https-redirect=maybe", "worker-processes=4"):
        code, _, err = run(platform, "edge:set", "shop", arg)
        assert code == 1 and err.startswith(" !     "), arg
    assert platform.store.edge_settings("shop") == {}
