"""Router conformance: header limits, timeouts (slow clients), metrics and the access log."""

from __future__ import annotations

import http.client
import re
import socket
import time
import urllib.request

import redis

from tests.harness import wait_for

from .routerkit import (
    backend_of,
    backends,
    get,
    make_config,
    raw_request,
    running_router,
    set_route,
)

HOST = "app.example.com"


def test_oversized_headers_get_400(redis_url, instance):
    """nginx answers 400 "Request Header Or Cookie Too Large" (not 431)."""
    config = make_config(redis_url, instance, max_header_bytes=4096)
    with backends("a") as (a,), running_router(config) as router:
        set_route(redis_url, instance, HOST, a.url)
        big = b"X-Big: " + b"y" * 5000 + b"\r\n"
        reply = raw_request(router.port, b"GET / HTTP/1.1\r\nHost: app.example.com\r\n" + big
                            + b"\r\n")
        assert reply.startswith(b"HTTP/1.1 400 ")
        # a head that never ends is cut off as well
        with socket.create_connection(("127.0.0.1", router.port), timeout=5) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: app.example.com\r\n")
            for _ in range(10):
                try:
                    s.sendall(b"X-More: " + b"z" * 1000 + b"\r\n")
                except OSError:
                    break
            assert s.recv(4096).startswith(b"HTTP/1.1 400 ")
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


def test_metrics_and_access_log(redis_url, instance):
    config = make_config(redis_url, instance, admin_listen=("127.0.0.1", 0))
    with backends("a") as (a,), running_router(config) as router:
        set_route(redis_url, instance, HOST, a.url, ident="shop")
        assert get(router.port, HOST, "/hello?x=1")[0] == 200
        assert get(router.port, HOST, "/x", **{"X-Test-Status": "500"})[0] == 500
        assert get(router.port, "nowhere.example.com")[0] == 404
        with urllib.request.urlopen(f"http://127.0.0.1:{router.admin_port}/metrics") as resp:
            text = resp.read().decode()
        # the app's port answers no /metrics
        assert get(router.port, HOST, "/metrics")[0] == 200
        time.sleep(1.5)  # the access log is flushed each second
        lines = config.access_log_path.read_text().splitlines()
    assert 'gitpaas_edge_requests_total{app="shop",code="200"} 1' in text
    assert 'gitpaas_edge_requests_total{app="shop",code="500"} 1' in text
    assert 'gitpaas_edge_requests_total{app="-",code="404"} 1' in text
    assert 'gitpaas_edge_responses_5xx_total{app="shop"} 1' in text
    assert len(lines) == 4
    when, host, method, path, status, nbytes, upstream, duration = lines[0].split(" ")
    assert (host, method, path, status) == (HOST, "GET", '"/hello?x=1"', "200")
    assert upstream == a.url.removeprefix("http://")
    assert int(nbytes) > 0 and float(duration) >= 0
    assert lines[2].split(" ")[4] == "404"


def test_access_log_rotates_past_its_size(redis_url, instance):
    from gitpaas.edge import Edge

    config = make_config(redis_url, instance, access_log_max_bytes=2000)
    with backends("a") as (a,), running_router(config):
        set_route(redis_url, instance, HOST, a.url)
        for _ in range(40):
            get(config.listen[1], HOST, "/" + "p" * 50)
        log = config.access_log_path
        # the access log is flushed each second: wait until all 40 lines are out
        wait_for(lambda: log.exists() and len(log.read_text().splitlines()) >= 40,
                 timeout=10, what="40 access log lines")
        edge = Edge(config)
        assert edge.rotate_logs()
        # The master reopens on SIGUSR1 and then tells the worker, so a request served
        # meanwhile is still written to the renamed file: ask again until one lands in the
        # new access.log (until the master has reopened, it does not exist: renamed away).
        sent = []

        def after_is_in_the_new_log() -> bool:
            sent.append(f"/after{len(sent)}")
            get(config.listen[1], HOST, sent[-1])
            return log.exists() and any(path in log.read_text() for path in sent)

        wait_for(after_is_in_the_new_log, timeout=10, interval=0.2,
                 what="nginx to reopen its log and write a request to it")
        rotated = log.with_name("access.log.1").read_text()
        assert len(rotated.splitlines()) >= 40


def counts_of(admin_port: int) -> dict[str, int]:
    """The 200 answers per app on the edge's /metrics page."""
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {m.group(1): int(m.group(2)) for m in re.finditer(
        r'^gitpaas_edge_requests_total\{app="([^"]*)",code="200"\} (\d+)$', text, re.M)}


def test_counts_in_host_slots_survive_swaps_and_refreshes(redis_url, instance):
    """The 200 answers of a host with one backend and no app settings are counted in its
    host slot, and moved to its route entry (its app's counters) before /metrics renders,
    before a slot emptied by a swap is reused and before a refresh replaces the entry: none is lost,
    none counted twice, each counted for the app that served it."""
    host = "count.example.com"
    config = make_config(redis_url, instance, admin_listen=("127.0.0.1", 0), cache_ttl=0.5)
    with backends("a", "b") as (a, b), running_router(config) as router:
        set_route(redis_url, instance, host, a.url, ident="shop")
        for _ in range(5):
            assert get(router.port, host)[0] == 200
        assert counts_of(router.admin_port).get("shop") == 5
        for _ in range(5):
            assert get(router.port, host)[0] == 200
        set_route(redis_url, instance, host, b.url, ident="other")  # a swap, published
        time.sleep(0.05)
        for _ in range(3):
            assert get(router.port, host)[0] == 200
        counts = counts_of(router.admin_port)
        assert (counts.get("shop"), counts.get("other")) == (10, 3)
        client = redis.Redis.from_url(redis_url)  # unpublished: seen by a refresh
        key = f"{instance}:frontend:{host}"
        client.delete(key)
        client.rpush(key, "third", a.url)
        client.close()
        time.sleep(0.8)
        sent = 0
        deadline = time.monotonic() + 5
        while backend_of(get(router.port, host)[2]) != "a":
            sent += 1
            assert time.monotonic() < deadline
        for _ in range(4):
            assert get(router.port, host)[0] == 200
        counts = counts_of(router.admin_port)
    assert counts.get("shop") == 10
    assert counts.get("other", 0) + counts.get("third", 0) == 3 + sent + 5
    assert counts.get("third", 0) >= 5


def test_each_worker_flushes_the_counts_in_its_host_slots(redis_url, instance):
    """/metrics adds the rendering worker's counts first; another worker's reach the page
    through its own once-a-second flush, which must take the counts waiting in its host
    slots (a worker with no route entry listed, every request served from a slot, flushed
    nothing). Each round's requests go on one connection (one worker); the page is read
    once, after the flush, on a new connection (either worker)."""
    host = "workers.example.com"
    config = make_config(redis_url, instance, admin_listen=("127.0.0.1", 0), workers=2)
    with backends("a") as (a,), running_router(config) as router:
        set_route(redis_url, instance, host, a.url, ident="shop")
        sent = 0
        for _ in range(6):
            conn = http.client.HTTPConnection("127.0.0.1", router.port, timeout=5)
            try:
                for _ in range(20):
                    conn.request("GET", "/", headers={"Host": host})
                    resp = conn.getresponse()
                    resp.read()
                    assert resp.status == 200
                    sent += 1
            finally:
                conn.close()
            time.sleep(1.5)
            assert counts_of(router.admin_port).get("shop") == sent
