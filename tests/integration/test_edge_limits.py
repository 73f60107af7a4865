"""Per-IP limits of the edge (issue 12): request rate (``edge_limit_rate``/``_burst``),
connections (``edge_limit_conn``) and the exempt networks (``edge_limit_exempt``).

Loopback is exempt by default, so each edge here gets an exempt list that leaves the
client's loopback address limited; a second loopback source (127.0.0.2, 127.0.0.3, bound
with ``source_address``) stands for another client IP.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.harness import wait_for

from .routerkit import backends, make_config, running_router, set_route

HOST = "limited.example.com"
APP = "limitedapp"
# nginx's limit_req/limit_conn answer, documented in docs/router.md
LIMITED = 429
PAGE = b"Too many requests\n"


def fetch(port: int, source: str = "127.0.0.1", host: str = HOST) -> tuple[int, dict, bytes]:
    """One GET on a fresh connection from ``source``: (status, headers, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5, source_address=(source, 0))
    try:
        conn.request("GET", "/", headers={"Host": host})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def burst_of(port: int, source: str, count: int) -> tuple[list[int], float]:
    """``count`` GETs as fast as they go from ``source``: their statuses and the time taken."""
    began = time.monotonic()
    statuses = [fetch(port, source)[0] for _ in range(count)]
    return statuses, time.monotonic() - began


def assert_limited_page(port: int, source: str, backend_url: str) -> None:
    """The next request from ``source`` is refused with the edge's short page."""
    status, headers, body = fetch(port, source)
    assert status == LIMITED
    assert body == PAGE
    text = body + repr(headers).encode()
    assert APP.encode() not in text and backend_url.removeprefix("http://").encode() not in text


def test_over_the_rate_requests_get_429(redis_url, instance):
    """rate 1/s, burst 0: of 20 requests in a row at most one a second passes; the rest get
    429 with a page naming no app; a second later the client is served again."""
    config = make_config(redis_url, instance, limit_rate=1, limit_burst=0, limit_exempt="")
    with backends("a") as (a,), running_router(config) as edge:
        set_route(redis_url, instance, HOST, a.url, ident=APP)
        statuses, took = burst_of(edge.port, "127.0.0.1", 20)
        assert set(statuses) <= {200, LIMITED}
        assert statuses[0] == 200
        assert statuses.count(200) <= 2 + int(took)  # the first, then about one a second
        assert statuses.count(LIMITED) >= 20 - 2 - int(took)
        assert a.hits == statuses.count(200)  # a refused request never reached the app
        assert_limited_page(edge.port, "127.0.0.1", a.url)
        time.sleep(1.2)
        assert fetch(edge.port)[0] == 200


def test_the_burst_lets_that_many_more_through(redis_url, instance):
    """burst 5: a quick run of requests gets the first and 5 more (nodelay), then 429."""
    config = make_config(redis_url, instance, limit_rate=1, limit_burst=5, limit_exempt="")
    with backends("a") as (a,), running_router(config) as edge:
        set_route(redis_url, instance, HOST, a.url, ident=APP)
        statuses, took = burst_of(edge.port, "127.0.0.1", 12)
        assert statuses[:6] == [200] * 6 or took > 1  # a busy machine may take longer
        assert 6 <= statuses.count(200) <= 6 + 1 + int(took)
        assert LIMITED in statuses or took >= 5


def test_the_rate_is_per_client_ip(redis_url, instance):
    """127.0.0.1 using up its rate does not limit 127.0.0.3 (another client IP)."""
    config = make_config(redis_url, instance, limit_rate=1, limit_burst=0, limit_exempt="")
    with backends("a") as (a,), running_router(config) as edge:
        set_route(redis_url, instance, HOST, a.url, ident=APP)
        statuses, _ = burst_of(edge.port, "127.0.0.1", 5)
        assert LIMITED in statuses
        assert fetch(edge.port, "127.0.0.3")[0] == 200  # its own first request
        assert fetch(edge.port, "127.0.0.3")[0] == LIMITED  # and its own limit
        assert fetch(edge.port, "127.0.0.1")[0] == LIMITED  # still limited meanwhile


def test_an_exempt_network_is_not_limited(redis_url, instance):
    """With 127.0.0.2/32 exempt, 30 requests in a row from it are all served, while the
    same from 127.0.0.1 (not exempt) are limited."""
    config = make_config(redis_url, instance, limit_rate=1, limit_burst=0,
                         limit_exempt="127.0.0.2/32 ::1")
    with backends("a") as (a,), running_router(config) as edge:
        set_route(redis_url, instance, HOST, a.url, ident=APP)
        statuses, _ = burst_of(edge.port, "127.0.0.2", 30)
        assert statuses == [200] * 30
        statuses, _ = burst_of(edge.port, "127.0.0.1", 5)
        assert LIMITED in statuses


def test_the_default_exempts_loopback(redis_url, instance):
    """The shipped default (``127.0.0.0/8 ::1`` exempt) limits no loopback client, even at
    rate 1/s: what the rest of the suite and a local proxy in front of the edge rely on."""
    config = make_config(redis_url, instance, limit_rate=1, limit_burst=0, limit_conn=1)
    with backends("a") as (a,), running_router(config) as edge:
        set_route(redis_url, instance, HOST, a.url, ident=APP)
        assert burst_of(edge.port, "127.0.0.1", 10)[0] == [200] * 10
        assert burst_of(edge.port, "127.0.0.5", 10)[0] == [200] * 10


class Holding:
    """A backend that holds every request until released (at most 15 s)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.arrived = 0
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                with lock:
                    outer.arrived += 1
                outer.release.wait(15)
                try:
                    self.send_response(200)
                    self.send_header("Content-Length", "5")
                    self.end_headers()
                    self.wfile.write(b"held\n")
                except OSError:  # the client (or the edge) went away meanwhile
                    self.close_connection = True

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def holding() -> Iterator[Holding]:
    backend = Holding()
    try:
        yield backend
    finally:
        backend.close()


@contextmanager
def held_requests(port: int, source: str, count: int) -> Iterator[list[socket.socket]]:
    """``count`` connections from ``source``, each with a GET under way (its answer unread)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.create_connection(("127.0.0.1", port), timeout=5,
                                         source_address=(source, 0))
            socks.append(s)
            s.sendall(f"GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
        yield socks
    finally:
        for s in socks:
            s.close()


def test_over_the_connection_limit_requests_get_429(redis_url, instance):
    """limit_conn 2: with two requests held open by the backend, a third connection from
    the same IP gets 429 at once (the app never sees it); another IP and an exempt one are
    not refused; once the held ones finish the client is served again."""
    config = make_config(redis_url, instance, limit_conn=2, limit_rate=1000,
                         limit_burst=1000, limit_exempt="127.0.0.2/32")
    with holding() as backend, running_router(config) as edge:
        set_route(redis_url, instance, HOST, backend.url, ident=APP)
        with held_requests(edge.port, "127.0.0.1", 2) as held:
            wait_for(lambda: backend.arrived == 2, timeout=5, what="2 held requests")
            began = time.monotonic()
            assert_limited_page(edge.port, "127.0.0.1", backend.url)
            assert time.monotonic() - began < 2
            assert backend.arrived == 2
            # another client IP has connections of its own, an exempt one has no limit
            with held_requests(edge.port, "127.0.0.3", 2), \
                 held_requests(edge.port, "127.0.0.2", 3):
                wait_for(lambda: backend.arrived == 7, timeout=5,
                         what="the other clients' requests to reach the app")
                backend.release.set()
                for s in held:
                    s.settimeout(5)
                    assert s.recv(4096).startswith(b"HTTP/1.1 200 ")
        wait_for(lambda: fetch(edge.port)[0] == 200, timeout=5,
                 what="the client served again")


def test_zero_means_no_limit(redis_url, instance):
    """``edge_limit_rate: 0`` / ``edge_limit_conn: 0`` turn a limit off (nginx itself refuses
    a limit of 0: before, such a setting kept the edge from starting)."""
    config = make_config(redis_url, instance, limit_rate=0, limit_conn=0, limit_exempt="")
    with holding() as backend, running_router(config) as edge:
        set_route(redis_url, instance, HOST, backend.url, ident=APP)
        backend.release.set()
        assert burst_of(edge.port, "127.0.0.1", 20)[0] == [200] * 20
        backend.release.clear()
        with held_requests(edge.port, "127.0.0.1", 5):
            wait_for(lambda: backend.arrived == 25, timeout=5, what="5 held requests")
            backend.release.set()


def test_idle_keep_alive_connections_do_not_count(redis_url, instance):
    """limit_conn counts requests under way, not open connections: with limit 1, three
    idle keep-alive connections of one client leave its next request served."""
    config = make_config(redis_url, instance, limit_conn=1, limit_rate=1000,
                         limit_burst=1000, limit_exempt="")
    with backends("a") as (a,), running_router(config) as edge:
        set_route(redis_url, instance, HOST, a.url, ident=APP)
        idle = [http.client.HTTPConnection("127.0.0.1", edge.port, timeout=5)
                for _ in range(3)]
        try:
            for conn in idle:
                conn.request("GET", "/", headers={"Host": HOST})
                resp = conn.getresponse()
                resp.read()
                assert resp.status == 200 and not resp.will_close
            assert fetch(edge.port)[0] == 200
            for conn in idle:  # each still usable
                conn.request("GET", "/", headers={"Host": HOST})
                resp = conn.getresponse()
                resp.read()
                assert resp.status == 200
        finally:
            for conn in idle:
                conn.close()
