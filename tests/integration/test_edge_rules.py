"""Edge rules of issue 12 against a real nginx edge: a random live backend, a swap under
load that drops nothing, and error pages that name no app and no backend."""

from __future__ import annotations

import http.client
import shutil
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import redis

from gitpaas.edge import Edge
from gitpaas.routes import Routes
from tests.harness import wait_for

from .routerkit import (
    backend_of,
    backends,
    free_port,
    get,
    make_config,
    raw_request,
    running_router,
    set_route,
)

HOST = "rules.example.com"
APP = "secretapp"


class WhoAmI(BaseHTTPRequestHandler):
    """Answers {"backend": <its server's name>} in one write (a buffered wfile: no Nagle
    wait between head and body, so hundreds of requests take a second, not 40 ms each)."""

    protocol_version = "HTTP/1.1"
    wbufsize = 65536
    server: Who

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.hits += 1
        body = b'{"backend": "%s"}' % self.server.name.encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Who(ThreadingHTTPServer):
    """A backend on 127.0.0.1 that says who it is, counting its requests."""

    daemon_threads = True

    def __init__(self, name: str) -> None:
        super().__init__(("127.0.0.1", 0), WhoAmI)
        self.name, self.hits, self.lock = name, 0, threading.Lock()
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        threading.Thread(target=self.serve_forever, daemon=True).start()


@contextmanager
def whoami(*names: str) -> Iterator[list[Who]]:
    servers: list[Who] = []
    try:
        for name in names:
            servers.append(Who(name))
        yield servers
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


def test_each_request_picks_a_random_live_backend(redis_url, instance):
    """300 requests on fresh connections over 3 healthy backends: each gets a real share
    (expected 100; under 45 is about 1e-9 likely); with backend 1 marked dead in
    ``dead:<host>`` it gets none while the mark lives, and the other two share."""
    with whoami("b0", "b1", "b2") as started, running_router(
        make_config(redis_url, instance)
    ) as edge:
        set_route(redis_url, instance, HOST, *(b.url for b in started), ident=APP)
        shares = Counter(backend_of(get(edge.port, HOST)[2]) for _ in range(300))
        assert set(shares) == {"b0", "b1", "b2"}, shares
        assert min(shares.values()) > 45, shares
        # another host on the same backends, marked before the edge first sees it
        dead_host = "marked." + HOST
        set_route(redis_url, instance, dead_host, *(b.url for b in started), ident=APP)
        client = redis.Redis.from_url(redis_url)
        try:
            key = f"{instance}:dead:{dead_host}"
            client.sadd(key, 1)
            client.expire(key, 30)
            before = started[1].hits
            shares = Counter(backend_of(get(edge.port, dead_host)[2]) for _ in range(150))
            assert started[1].hits == before, shares
            assert set(shares) == {"b0", "b2"} and min(shares.values()) > 30, shares
            client.delete(key)  # the mark gone (and announced): b1 is picked again
            client.publish(f"{instance}:routes", dead_host)
            wait_for(lambda: backend_of(get(edge.port, dead_host)[2]) == "b1", timeout=5,
                     interval=0, what="b1 picked again")
        finally:
            client.delete(key)
            client.close()


class Load(threading.Thread):
    """GETs to HOST until stopped (or ``limit`` seconds): every status, backend, error."""

    def __init__(self, port: int, keep_alive: bool, limit: float = 30.0) -> None:
        super().__init__(daemon=True)
        self.port, self.keep_alive, self.limit = port, keep_alive, limit
        self.stop = threading.Event()
        self.answers: Counter[tuple[int, str]] = Counter()
        self.errors: list[str] = []

    def run(self) -> None:
        deadline = time.monotonic() + self.limit
        conn: http.client.HTTPConnection | None = None
        while not self.stop.is_set() and time.monotonic() < deadline:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            try:
                conn.request("GET", "/", headers={"Host": HOST})
                resp = conn.getresponse()
                body = resp.read()
            except (OSError, http.client.HTTPException) as exc:
                self.errors.append(repr(exc))
                conn.close()
                conn = None
                continue
            try:
                who = backend_of(body)
            except ValueError:
                who = body[:80].decode("latin-1")
            self.answers[(resp.status, who)] += 1
            if not self.keep_alive or resp.will_close:
                conn.close()
                conn = None
        if conn is not None:
            conn.close()


def test_fifty_swaps_under_load_drop_no_request(redis_url, instance):
    """4 clients (2 keep-alive, 2 a new connection per request) while 50 published swaps
    (Routes.swap, as a deploy does) alternate the host between two backends: every answer
    is a 200 from one of the two, none fails, and both served."""
    routes = Routes(redis_url, f"{instance}:")
    with whoami("a", "b") as (a, b), running_router(make_config(redis_url, instance)) as edge:
        routes.swap(APP, [HOST], [a.url])
        assert get(edge.port, HOST)[0] == 200
        load = [Load(edge.port, keep_alive=i % 2 == 0) for i in range(4)]
        for t in load:
            t.start()
        try:
            for i in range(50):
                routes.swap(APP, [HOST], [(b if i % 2 == 0 else a).url])
                time.sleep(0.03)
            time.sleep(0.2)
        finally:
            for t in load:
                t.stop.set()
            for t in load:
                t.join(15)
            routes.remove([HOST])
            routes.close()
        assert not any(t.is_alive() for t in load)
    answers = sum((t.answers for t in load), Counter())
    errors = [e for t in load for e in t.errors]
    assert errors == [], errors[:5]
    assert set(answers) <= {(200, "a"), (200, "b")}, answers
    assert answers[(200, "a")] > 0 and answers[(200, "b")] > 0, answers
    assert sum(answers.values()) > 100, answers  # it was load


# -- error pages ---------------------------------------------------------------------------


def split(reply: bytes) -> tuple[int, bytes, bytes]:
    """A raw HTTP/1.1 answer: (status, head, body)."""
    head, _, body = reply.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), head, body


def assert_names_nothing(status: int, head: bytes, body: bytes, *secrets: str) -> None:
    """A short edge page: neither the app nor a backend address in its head or body."""
    assert len(body) < 400, body
    for secret in secrets:
        assert secret.encode().lower() not in head.lower(), (status, secret, head)
        assert secret.encode().lower() not in body.lower(), (status, secret, body)


def request(port: int, host: str, method: str = "GET", body: bytes = b"",
            source: str = "127.0.0.1") -> tuple[int, bytes, bytes]:
    """One request on a fresh connection: (status, head as text, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10,
                                      source_address=(source, 0))
    try:
        conn.request(method, "/", body=body or None, headers={"Host": host})
        resp = conn.getresponse()
        data = resp.read()
        head = "\r\n".join(f"{k}: {v}" for k, v in resp.getheaders())
        return resp.status, head.encode(), data
    finally:
        conn.close()


def test_error_pages_name_no_app_and_no_backend(redis_url, instance):
    """400, 404, 413, 429, 502 and 504 as this edge answers them: short pages without the
    app's name or any backend's address (docs/router.md lists which case gets which code:
    an app with no backends is 404, all backends dead or refusing 502)."""
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(8)  # accepts (in the backlog) and never answers
    refused = f"127.0.0.1:{free_port()}"
    config = make_config(redis_url, instance, client_max_body_size=1000, backend_timeout=1.0,
                         limit_rate=1, limit_burst=0, limit_exempt="127.0.0.1/32")
    try:
        with backends("live", "other") as (live, other), running_router(config) as edge:
            addrs = [live.url, other.url, f"127.0.0.1:{hung.getsockname()[1]}", refused]
            secrets = [APP, *(u.removeprefix("http://") for u in addrs),
                       *(u.rsplit(":", 1)[1] for u in addrs)]

            def page(host: str, urls: list[str], expected: int, **kw: object) -> None:
                set_route(redis_url, instance, host, *urls, ident=APP)
                status, head, body = request(edge.port, host, **kw)  # type: ignore[arg-type]
                assert status == expected, (host, status, body)
                assert_names_nothing(status, head, body, *secrets)

            set_route(redis_url, instance, "dup.example.com", live.url, ident=APP)
            reply = raw_request(edge.port, b"GET / HTTP/1.1\r\nHost: dup.example.com\r\n"
                                b"Host: dup.example.com\r\n\r\n")
            status, head, body = split(reply)
            assert status == 400
            assert_names_nothing(status, head, body, *secrets)
            page("nobackends.example.com", [], 404)  # a known app, no web process
            page("big.example.com", [live.url], 413, method="POST", body=b"x" * 2000)
            page("refused.example.com", [f"http://{refused}"], 502)
            page("allrefused.example.com",
                 [f"http://{refused}", f"http://127.0.0.1:{free_port()}"], 502)
            page("hung.example.com", [f"http://127.0.0.1:{hung.getsockname()[1]}"], 504)
            client = redis.Redis.from_url(redis_url)
            try:
                key = f"{instance}:dead:alldead.example.com"
                set_route(redis_url, instance, "alldead.example.com", live.url, other.url,
                          ident=APP)
                client.sadd(key, 0, 1)
                client.expire(key, 30)
                client.publish(f"{instance}:routes", "alldead.example.com")
                time.sleep(0.05)
                status, head, body = request(edge.port, "alldead.example.com")
                assert status == 502 and live.hits == other.hits == 0
                assert_names_nothing(status, head, body, *secrets)
            finally:
                client.delete(key)
                client.close()
            # 429: 127.0.0.2 is not exempt here (127.0.0.1 is, for the cases above)
            set_route(redis_url, instance, "busy.example.com", live.url, ident=APP)
            statuses = []
            for _ in range(10):
                status, head, body = request(edge.port, "busy.example.com", source="127.0.0.2")
                statuses.append(status)
                if status == 429:
                    assert_names_nothing(status, head, body, *secrets)
            assert 429 in statuses
    finally:
        hung.close()


def test_503_page_when_redis_is_away_names_nothing(instance):
    """An edge without Redis answers an unknown host 503, a short page naming nothing."""
    config = make_config(f"redis://127.0.0.1:{free_port()}/0", instance)
    edge = Edge(config)
    try:
        edge.start()
        status, head, body = request(config.listen[1], "shop.example.com")
        assert status == 503
        assert body == b"Service unavailable, try again shortly.\n"
        assert_names_nothing(status, head, body, "shop", str(config.listen[1]))
    finally:
        edge.stop(graceful=False)
        shutil.rmtree(config.directory, ignore_errors=True)
