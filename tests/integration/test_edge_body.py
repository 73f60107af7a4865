"""An app's request body limit holds for every framing: Content-Length, HTTP/1.1 chunked,
HTTP/2 without content-length (a real nginx edge, real backends, curl for HTTP/2)."""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import secrets
import shutil
import socket
import subprocess
import time

import pytest
import redis

from .routerkit import backends, get, make_config, running_router, set_route

HOST = "up.paas.localhost"
LIMIT = 40_000  # past client_body_buffer_size (16k): a body this long is in a temp file


def _limit(redis_url: str, instance: str, ident: str, limit: int) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        client.hset(f"{instance}:edge:{ident}", "client_max_body_size", str(limit))
    finally:
        client.close()


def _drop(redis_url: str, instance: str, ident: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        client.delete(f"{instance}:edge:{ident}")
    finally:
        client.close()


def _post(port: int, host: str, body: bytes, chunked: bool) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        if chunked:
            # an iterable body with encode_chunked: Transfer-Encoding: chunked, 7k chunks
            pieces = (body[i:i + 7000] for i in range(0, len(body), 7000))
            conn.request("POST", "/up", body=pieces, headers={"Host": host},
                         encode_chunked=True)
        else:
            conn.request("POST", "/up", body=body, headers={"Host": host})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _echoed(reply: bytes) -> tuple[bytes, dict[str, str]]:
    seen = json.loads(reply)
    return seen["body"].encode("latin-1"), {k.lower(): v for k, v in seen["headers"]}


@pytest.fixture
def edge_and_backend(redis_url, instance):
    ident = f"{instance}-up"
    config = make_config(redis_url, instance, https_listen=("127.0.0.1", 0))
    with backends("a") as (a,), running_router(config) as edge:
        _limit(redis_url, instance, ident, LIMIT)
        set_route(redis_url, instance, HOST, a.url, ident=ident)
        yield edge, a
    _drop(redis_url, instance, ident)


def test_chunked_body_over_the_apps_limit_is_refused(edge_and_backend):
    edge, a = edge_and_backend
    over = bytes(range(256)) * (LIMIT // 256 + 10)
    for chunked in (True, False):
        status, page = _post(edge.port, HOST, over, chunked)
        assert (status, page) == (413, b"Request body too large\n"), chunked
    assert a.hits == 0
    # exactly the limit, and under it: the backend gets the exact body
    for size in (LIMIT, 100, LIMIT - 1):
        body = bytes(range(256)) * (size // 256) + b"z" * (size % 256)
        status, reply = _post(edge.port, HOST, body, chunked=True)
        assert status == 200, size
        got, headers = _echoed(reply)
        assert got == body
        assert headers["content-length"] == str(size) and "transfer-encoding" not in headers
    assert a.hits == 3
    status, _ = _post(edge.port, HOST, b"x" * (LIMIT + 1), chunked=True)
    assert status == 413 and a.hits == 3


def test_default_limit_holds_for_chunked_bodies(redis_url, instance):
    """An app without settings: the edge's edge_client_max_body_size, on the fast path (a
    host with one backend and no settings, after its first request)."""
    config = make_config(redis_url, instance, client_max_body_size=8192)
    with backends("a") as (a,), running_router(config) as edge:
        set_route(redis_url, instance, HOST, a.url, ident=f"{instance}-plain")
        for _ in range(3):
            assert get(edge.port, HOST)[0] == 200
        assert _post(edge.port, HOST, b"y" * 9000, chunked=True)[0] == 413
        assert _post(edge.port, HOST, b"y" * 9000, chunked=False)[0] == 413
        assert a.hits == 3
        status, reply = _post(edge.port, HOST, b"y" * 8000, chunked=True)
        assert status == 200 and _echoed(reply)[0] == b"y" * 8000


def _curl_h2(edge, body: bytes | None, *args: str) -> tuple[int, bytes]:
    """PUT over HTTP/2 (TLS, ALPN) with the body from stdin: no content-length (or
    ``args`` and no body)."""
    url = f"https://{HOST}:{edge.tls_port}/up"
    send = ["-T", "-"] if body is not None else []
    proc = subprocess.run(
        ["curl", "--http2", "-k", "-sS", "--max-time", "20", *send, *args,
         "--resolve", f"{HOST}:{edge.tls_port}:127.0.0.1", "-w", "\n%{http_version} %{http_code}",
         url],
        input=body or b"", capture_output=True, timeout=30, check=True)
    out, _, tail = proc.stdout.rpartition(b"\n")
    version, code = tail.split()
    assert version == b"2", tail
    return int(code), out


def test_http2_body_without_content_length(edge_and_backend):
    if shutil.which("curl") is None:
        pytest.fail("curl is needed (DEB_PACKAGES)")
    edge, a = edge_and_backend
    code, page = _curl_h2(edge, b"q" * (LIMIT + 5000))
    assert (code, page) == (413, b"Request body too large\n")
    assert a.hits == 0
    body = b"h2 body " * 3000
    code, reply = _curl_h2(edge, body)
    assert code == 200
    got, headers = _echoed(reply)
    assert got == body and headers["content-length"] == str(len(body))
    assert a.hits == 1
    # no body (GET), and a body with content-length over the limit
    assert _curl_h2(edge, None)[0] == 200
    assert a.hits == 2
    code, page = _curl_h2(edge, None, "--data-binary", "c" * (LIMIT + 1))
    assert (code, page) == (413, b"Request body too large\n")
    code, reply = _curl_h2(edge, None, "--data-binary", "c" * LIMIT)
    assert code == 200 and _echoed(reply)[0] == b"c" * LIMIT
    assert a.hits == 3


def test_a_body_read_does_not_mix_requests(redis_url, instance):
    """Reading a body yields the worker to other requests: a chunked request's own head
    (the headers its Connection names, a client's X-Forwarded-Prefix) is still what the
    edge strips once its body has come, whatever another request sent meanwhile."""
    ident = f"{instance}-mix"
    config = make_config(redis_url, instance, workers=1)
    with backends("a") as (a,), running_router(config) as edge:
        _limit(redis_url, instance, ident, LIMIT)
        set_route(redis_url, instance, HOST, a.url, ident=ident)
        with socket.create_connection(("127.0.0.1", edge.port), timeout=10) as s:
            s.sendall(f"POST /up HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\n"
                      "Connection: close, X-Drop\r\nX-Drop: 1\r\n"
                      "X-Forwarded-Prefix: /evil\r\n\r\n5\r\nhello\r\n".encode())
            time.sleep(0.3)  # the edge waits for the rest of the body
            # another request meanwhile, with neither header
            assert get(edge.port, HOST)[0] == 200
            s.sendall(b"6\r\n world\r\n0\r\n\r\n")
            reply = b""
            while piece := s.recv(65536):
                reply += piece
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 "), head
        got, headers = _echoed(body)
        assert got == b"hello world"
        assert "x-drop" not in headers and "x-forwarded-prefix" not in headers, headers
    _drop(redis_url, instance, ident)


def test_a_route_lookup_does_not_mix_requests(redis_url, instance):
    """A host the worker has not cached is looked up in Redis, and the request waits
    (yields) meanwhile: what the edge read of its head (Content-Length, the headers its
    Connection names, a client's X-Forwarded-Prefix) must still be its own, whatever
    other requests sent meanwhile. Many requests at once to made-up names under a
    wildcard frontend (each a lookup, a long one: 200 labels deep) with those headers,
    half with a body over the app's limit, alongside plain ones: the long bodies all get
    413, the app sees none of those headers. (Before, each of 3 runs let some through.)"""
    ident = f"{instance}-wild"
    config = make_config(redis_url, instance, workers=1)
    with backends("a") as (a,), running_router(config) as edge:
        _limit(redis_url, instance, ident, 100)
        set_route(redis_url, instance, "*.wild.localhost", a.url, ident=ident)

        def send(host: str, body: bytes, **headers: str) -> tuple[int, bytes]:
            conn = http.client.HTTPConnection("127.0.0.1", edge.port, timeout=20)
            try:
                conn.request("POST", "/", body=body, headers={"Host": host, **headers})
                resp = conn.getresponse()
                return resp.status, resp.read()
            finally:
                conn.close()

        def hostile(i: int) -> tuple[int, bytes]:
            return send(f"n{i}-{_label()}.{DEEP}wild.localhost", b"x" * (200 if i % 2 else 50),
                        **{"X-Forwarded-Prefix": "/evil", "Connection": "keep-alive, X-Drop",
                           "X-Drop": "1"})

        def plain(i: int) -> tuple[int, bytes]:
            return send("p.wild.localhost", b"y")

        assert plain(0)[0] == 200  # p.wild.localhost is cached from here on
        with concurrent.futures.ThreadPoolExecutor(32) as pool:
            hostiles = [pool.submit(hostile, i) for i in range(400)]
            plains = [pool.submit(plain, i) for i in range(400)]
            for i, f in enumerate(hostiles):
                status, reply = f.result()
                assert status == (413 if i % 2 else 200), i
                if status == 200:
                    headers = _echoed(reply)[1]
                    assert "x-drop" not in headers and "x-forwarded-prefix" not in headers
            assert {f.result()[0] for f in plains} == {200}
        assert a.hits == 601
    _drop(redis_url, instance, ident)


# 200 labels: the lookup tries a frontend per parent name, so each takes Redis a while
DEEP = "a." * 200


def _label() -> str:
    return secrets.token_hex(4)
