"""Router conformance: Hipache lookup order, status codes, keep-alive across hosts."""

from __future__ import annotations

import http.client
import time

import redis

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


def test_wildcard_lookup_order(redis_url, instance):
    with backends("exact", "bc", "c", "com", "star") as (exact, bc, c, com, star), running_router(
        make_config(redis_url, instance)
    ) as router:
        set_route(redis_url, instance, "a.b.c.com", exact.url)
        set_route(redis_url, instance, "*.b.c.com", bc.url)
        set_route(redis_url, instance, "*.c.com", c.url)
        set_route(redis_url, instance, "*.com", com.url)
        set_route(redis_url, instance, "*", star.url)
        expected = {
            "a.b.c.com": "exact",
            "A.B.C.COM:8080": "exact",
            "x.b.c.com": "bc",
            "b.c.com": "c",
            "x.y.c.com": "c",
            "deep.x.y.c.com": "c",
            "other.com": "com",
            "example.org": "star",
            "localhost": "star",
        }
        for host, name in expected.items():
            status, _, body = get(router.port, host)
            assert status == 200, host
            assert backend_of(body) == name, host


def test_unknown_host_is_404_naming_no_app(redis_url, instance):
    with backends("a") as (a,), running_router(make_config(redis_url, instance)) as router:
        set_route(redis_url, instance, "known.example.com", a.url, ident="secretapp")
        status, _, body = get(router.port, "unknown.example.com")
        assert status == 404
        assert b"secretapp" not in body and b"unknown" not in body
        assert len(body) < 200


def test_missing_host_header_is_400(redis_url, instance):
    with running_router(make_config(redis_url, instance)) as router:
        reply = raw_request(router.port, b"GET / HTTP/1.0\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 400 ")
        reply = raw_request(router.port, b"GET / HTTP/1.1\r\nHost: \r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 400 ")


def test_garbage_is_400(redis_url, instance):
    with running_router(make_config(redis_url, instance)) as router:
        reply = raw_request(router.port, b"\x16\x03\x01 not http at all\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 400 ")


def test_nothing_live_is_502(redis_url, instance):
    with running_router(make_config(redis_url, instance)) as router:
        set_route(redis_url, instance, "down.example.com", f"http://127.0.0.1:{free_port()}")
        status, _, _ = get(router.port, "down.example.com")
        assert status == 502
        # an identifier without backends (an app with no web process) is not "found" live
        set_route(redis_url, instance, "empty.example.com")
        status, _, _ = get(router.port, "empty.example.com")
        assert status == 404


def test_all_dead_is_502(redis_url, instance):
    with backends("a", "b") as (a, b), running_router(make_config(redis_url, instance)) as router:
        set_route(redis_url, instance, "dead.example.com", a.url, b.url)
        client = redis.Redis.from_url(redis_url)
        client.sadd(f"{instance}:dead:dead.example.com", 0, 1)
        client.publish(f"{instance}:routes", "dead.example.com")
        client.close()
        time.sleep(0.05)
        status, _, _ = get(router.port, "dead.example.com")
        assert status == 502
        assert a.hits == b.hits == 0


def test_ping(redis_url, instance):
    with running_router(make_config(redis_url, instance)) as router:
        status, _, _ = get(router.port, "__ping__")
        assert status == 200


def test_keep_alive_routes_each_request_by_its_host(redis_url, instance):
    with backends("one", "two") as (one, two), running_router(
        make_config(redis_url, instance)
    ) as router:
        set_route(redis_url, instance, "one.example.com", one.url)
        set_route(redis_url, instance, "two.example.com", two.url)
        conn = http.client.HTTPConnection("127.0.0.1", router.port, timeout=5)
        seen = []
        for i in range(6):
            host = "one.example.com" if i % 2 == 0 else "two.example.com"
            conn.request("GET", f"/{i}", headers={"Host": host})
            resp = conn.getresponse()
            assert resp.status == 200
            seen.append(backend_of(resp.read()))
        sock = conn.sock
        conn.request("GET", "/", headers={"Host": "nowhere.example.com"})
        resp = conn.getresponse()
        assert resp.status == 404
        resp.read()
        conn.request("GET", "/", headers={"Host": "one.example.com"})
        assert backend_of(conn.getresponse().read()) == "one"
        assert conn.sock is sock  # one client connection throughout
        conn.close()
        assert seen == ["one", "two"] * 3


def test_pipelined_requests_answer_in_order(redis_url, instance):
    with backends("one", "two") as (one, two), running_router(
        make_config(redis_url, instance)
    ) as router:
        set_route(redis_url, instance, "one.example.com", one.url)
        set_route(redis_url, instance, "two.example.com", two.url)
        reply = raw_request(
            router.port,
            b"GET /1 HTTP/1.1\r\nHost: one.example.com\r\n\r\n"
            b"GET /2 HTTP/1.1\r\nHost: two.example.com\r\n\r\n"
            b"GET /3 HTTP/1.1\r\nHost: one.example.com\r\nConnection: close\r\n\r\n",
        )
        assert reply.count(b"HTTP/1.1 200 ") == 3
        first, second, third = (reply.find(b'"/%d"' % i) for i in (1, 2, 3))
        assert 0 < first < second < third
