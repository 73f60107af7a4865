"""Router conformance: header limits, timeouts (slow clients), metrics and the access log."""

from __future__ import annotations

import logging
import socket
import time
import urllib.request

from .routerkit import backends, get, make_config, raw_request, running_router, set_route

HOST = "app.example.com"


def test_oversized_headers_get_431(redis_url, instance):
    config = make_config(redis_url, instance, max_header_bytes=4096)
    with backends("a") as (a,), running_router(config) as router:
        set_route(redis_url, instance, HOST, a.url)
        big = b"X-Big: " + b"y" * 5000 + b"\r\n"
        reply = raw_request(router.port, b"GET / HTTP/1.1\r\nHost: app.example.com\r\n" + big
                            + b"\r\n")
        assert reply.startswith(b"HTTP/1.1 431 ")
        # a head that never ends is cut off as well
        with socket.create_connection(("127.0.0.1", router.port), timeout=5) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: app.example.com\r\n")
            for _ in range(10):
                try:
                    s.sendall(b"X-More: " + b"z" * 1000 + b"\r\n")
                except OSError:
                    break
            assert s.recv(4096).startswith(b"HTTP/1.1 431 ")
        assert get(router.port, HOST)[0] == 200


def test_slow_client_is_cut_off_and_does_not_block_others(redis_url, instance):
    config = make_config(redis_url, instance, header_timeout=1.0)
    with backends("a") as (a,), running_router(config) as router:
        set_route(redis_url, instance, HOST, a.url)
        slow = [socket.create_connection(("127.0.0.1", router.port)) for _ in range(20)]
        for s in slow:
            s.sendall(b"GET / HTTP/1.1\r\nHo")
        began = time.monotonic()
        for _ in range(20):
            assert get(router.port, HOST)[0] == 200
        assert time.monotonic() - began < 2
        for s in slow:
            s.settimeout(4)
            reply = s.recv(4096)
            assert reply == b"" or reply.startswith(b"HTTP/1.1 408 ")
            s.close()
        assert time.monotonic() - began < 4


def test_idle_keep_alive_connection_is_closed(redis_url, instance):
    config = make_config(redis_url, instance, idle_timeout=1.0)
    with backends("a") as (a,), running_router(config) as router:
        set_route(redis_url, instance, HOST, a.url)
        with socket.create_connection(("127.0.0.1", router.port), timeout=5) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: app.example.com\r\n\r\n")
            reply = b""
            while b'"backend"' not in reply:
                reply += s.recv(65536)
            began = time.monotonic()
            assert s.recv(10) == b""
            assert 0.5 < time.monotonic() - began < 3


def test_backend_timeout_is_504(redis_url, instance):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # accepts (in the backlog) and never answers
    config = make_config(redis_url, instance, backend_timeout=1.0)
    try:
        with running_router(config) as router:
            set_route(redis_url, instance, HOST, f"http://127.0.0.1:{listener.getsockname()[1]}")
            began = time.monotonic()
            assert get(router.port, HOST)[0] == 504
            assert time.monotonic() - began < 3
    finally:
        listener.close()


def test_metrics_and_access_log(redis_url, instance, caplog):
    config = make_config(redis_url, instance, admin_listen=("127.0.0.1", 0))
    caplog.set_level(logging.INFO, logger="gitpaas.router.access")
    with backends("a") as (a,), running_router(config) as router:
        set_route(redis_url, instance, HOST, a.url)
        assert get(router.port, HOST, "/hello?x=1")[0] == 200
        assert get(router.port, "nowhere.example.com")[0] == 404
        with urllib.request.urlopen(f"http://127.0.0.1:{router.admin_port}/metrics") as resp:
            text = resp.read().decode()
    assert 'gitpaas_router_requests_total{worker="0",code="200"} 1' in text
    assert 'gitpaas_router_requests_total{worker="0",code="404"} 1' in text
    assert 'gitpaas_router_errors_total{worker="0",kind="unknown_host"} 1' in text
    assert 'gitpaas_router_request_duration_seconds_count{worker="0"} 2' in text
    lines = [r.getMessage() for r in caplog.records if r.name == "gitpaas.router.access"]
    assert len(lines) == 2
    host, method, path, status, nbytes, backend, duration = lines[0].split(" ")
    assert (host, method, path, status, backend) == (HOST, "GET", "/hello?x=1", "200", a.url)
    assert int(nbytes) > 0 and duration.endswith("ms")
    assert lines[1].split(" ")[3] == "404"
