"""Hostile requests at the edge: each smuggling or framing trick is refused (400/501) or
defused, and never reaches a backend as a second request."""

from __future__ import annotations

import socket
import threading

import pytest

from .routerkit import backends, make_config, raw_request, running_router, set_route

HOST = b"h.example.com"
H = b"Host: " + HOST + b"\r\n"
HC = H + b"Connection: close\r\n"


@pytest.fixture
def edge(redis_url, instance):
    with backends("a") as (a,), running_router(make_config(redis_url, instance)) as router:
        set_route(redis_url, instance, HOST.decode(), a.url)
        yield router, a


def _status(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/1.") else 0


@pytest.mark.parametrize("request_bytes", [
    pytest.param(b"GET / HTTP/1.1\r\n" + H + H + b"\r\n", id="duplicate-host"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a.example.com\r\nHost: " + HOST + b"\r\n\r\n",
                 id="two-different-hosts"),
    pytest.param(b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 4\r\nTransfer-Encoding: chunked"
                 b"\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n" + H + b"\r\n", id="CL.TE"),
    pytest.param(b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nContent-Length: 40"
                 b"\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n" + H + b"\r\n", id="TE.CL"),
    pytest.param(b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 4\r\nContent-Length: 30\r\n\r\n"
                 b"abcdGET /smuggled HTTP/1.1\r\n\r\n", id="duplicate-content-length"),
    pytest.param(b"GET / HTTP/1.1\r\n" + H + b"X-Folded: a\r\n b\r\n\r\n", id="obs-fold"),
    pytest.param(b"GET / HTTP/1.1\n" + H.rstrip(b"\r\n") + b"\n\n", id="bare-LF"),
    pytest.param(b"GET / HTTP/1.1\r\n" + H + b"X-A: b\nX-B: c\r\n\r\n", id="bare-LF-inside"),
    pytest.param(b"GET / HTTP/1.1\r\n" + H.rstrip(b"\r\n") + b"\n\r\n", id="bare-LF-last-header"),
    pytest.param(b"GET / HTTP/1.1\r\n" + H + b"X-E:\nX-B: c\r\n\r\n", id="bare-LF-empty-value"),
    pytest.param(b"GET / HTTP/1.1\r\n" + H + b"X_U: 1\nX-B: c\r\n\r\n",
                 id="bare-LF-after-an-ignored-header"),
    pytest.param(b"GET / HTTP/1.1\r\n" + H + b"X-Big: " + b"a" * 3000 + b"\r\nX-A: b\nX-C: d"
                 b"\r\n\r\n", id="bare-LF-in-a-head-over-several-buffers"),
    pytest.param(b"GET / HTTP/1.1\r\n" + H + b"".join(b"X-%d: v\r\n" % i for i in range(80))
                 + b"X-A: b\nX-B: c\r\n\r\n", id="bare-LF-after-80-headers"),
    pytest.param(b"GET / HTTP/1.1\r\n" + H + b"X-A: b  \nX-B: c\r\n\r\n",
                 id="bare-LF-after-trailing-spaces"),
    pytest.param(b"GET / HTTP/1.1\r\n" + H + b"X-A: b \t\nX-B: c\r\n\r\n",
                 id="bare-LF-after-trailing-space-and-tab"),
    pytest.param(b"GET / HTTP/1.1\r\n" + H + b"X-A: b\t\nX-B: c\r\n\r\n",
                 id="bare-LF-after-a-trailing-tab"),
    pytest.param(b"GET / HTTP/1.1\r\n" + H.rstrip(b"\r\n") + b"  \n\r\n",
                 id="bare-LF-after-trailing-spaces-last-header"),
    pytest.param(b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
                 id="unknown-transfer-coding"),
    pytest.param(b"GET / HTTP/1.1\r\n" + H + b"X-Space : b\r\n\r\n", id="space-before-colon"),
])
def test_hostile_framing_is_refused(edge, request_bytes):
    router, backend = edge
    reply = raw_request(router.port, request_bytes, timeout=3)
    assert _status(reply) in (400, 501), reply[:200]
    assert backend.paths == []


@pytest.mark.parametrize("request_bytes", [
    pytest.param(b"GET /ok HTTP/1.1\r\n" + HC + b"\r\n", id="plain"),
    pytest.param(b"GET /ok HTTP/1.1\r\n" + HC + b"X-Empty:\r\nX-B: c\r\n\r\n", id="empty-value"),
    pytest.param(b"GET /ok HTTP/1.1\r\n" + HC + b"X_U: 1\r\nX-B: c\r\n\r\n",
                 id="an-ignored-header"),
    pytest.param(b"GET /ok HTTP/1.1\r\n" + HC + b"X-Big: " + b"a" * 3000 + b"\r\nX-C: d\r\n\r\n",
                 id="a-head-over-several-buffers"),
    pytest.param(b"GET /ok HTTP/1.1\r\n" + HC + b"".join(b"X-%d: v\r\n" % i for i in range(80))
                 + b"\r\n", id="80-headers"),
    pytest.param(b"GET /ok HTTP/1.0\r\n" + H + b"\r\n", id="HTTP/1.0"),
])
def test_clean_heads_are_served(edge, request_bytes):
    """The bare-LF check proves most heads clean from nginx's own header pointers and
    falls back to scanning a copy of the head when unsure: neither refuses a clean head."""
    router, backend = edge
    reply = raw_request(router.port, request_bytes, timeout=3)
    assert _status(reply) == 200, reply[:200]
    assert backend.paths == ["/ok"]


@pytest.mark.parametrize(("line", "relayed"), [
    pytest.param(b"X-A: b \r\n", b'["X-A", "b"]', id="trailing-space"),
    pytest.param(b"X-A: b   \r\n", b'["X-A", "b"]', id="trailing-spaces"),
    pytest.param(b"X-A: b\t\r\n", b'["X-A", "b\\t"]', id="trailing-tab"),
    pytest.param(b"X-A: b \t  \r\n", b'["X-A", "b \\t"]', id="trailing-space-tab-spaces"),
])
@pytest.mark.parametrize("last", [False, True], ids=["inside", "last-header"])
def test_trailing_whitespace_in_a_header_value_is_accepted(edge, line, relayed, last):
    """RFC 9112 allows whitespace after a field value (OWS): served, whether the line is
    inside the head or its last, and relayed as nginx reads it (it drops trailing spaces,
    keeps a tab and what precedes it)."""
    router, backend = edge
    head = HC + line if last else line + HC
    reply = raw_request(router.port, b"GET /ok HTTP/1.1\r\n" + head + b"\r\n", timeout=3)
    assert _status(reply) == 200, reply[:200]
    assert backend.paths == ["/ok"]
    assert relayed in reply


def test_connection_content_length_cannot_smuggle(edge):
    """``Connection: Content-Length`` must not strip the framing header while the body goes
    on: the backend would read the body as a second request on a pooled connection."""
    router, backend = edge
    smuggled = b"GET /smuggled HTTP/1.1\r\n" + H + b"\r\n"
    with socket.create_connection(("127.0.0.1", router.port), timeout=5) as s:
        s.sendall(b"POST /first HTTP/1.1\r\n" + H + b"Connection: Content-Length\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(smuggled) + smuggled)
        reply = b""
        while b'"body"' not in reply:
            reply += s.recv(65536)
    for i in range(3):  # other clients, likely on the same pooled upstream connection
        assert _status(raw_request(router.port, b"GET /next%d HTTP/1.1\r\n" % i + H
                                   + b"Connection: close\r\n\r\n")) == 200
    assert backend.paths == ["/first", "/next0", "/next1", "/next2"]
    assert b"GET /smuggled" in reply  # it arrived as the body of /first, nothing more


def test_connection_host_keeps_the_host(edge):
    router, backend = edge
    reply = raw_request(router.port, b"GET /x HTTP/1.1\r\n" + H
                        + b"Connection: Host, close\r\n\r\n")
    assert _status(reply) == 200
    assert b'["Host", "h.example.com"]' in reply
    assert backend.paths == ["/x"]


def test_bare_lf_response_from_a_backend_is_relayed(redis_url, instance):
    """Small servers (busybox CGI...) end header lines with LF alone: relayed, not 502."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    piece = conn.recv(65536)
                    if not piece:
                        break
                    data += piece
                conn.sendall(b"HTTP/1.0 200 OK\nContent-Type: text/plain\nX-Small: yes\n\nbare lf")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with running_router(make_config(redis_url, instance)) as router:
            set_route(redis_url, instance, HOST.decode(),
                      f"http://127.0.0.1:{listener.getsockname()[1]}")
            reply = raw_request(router.port, b"GET / HTTP/1.1\r\n" + H
                                + b"Connection: close\r\n\r\n")
            assert _status(reply) == 200
            assert b"X-Small: yes" in reply and b"\r\nbare lf\r\n" in reply  # re-chunked
    finally:
        stop.set()
        listener.close()


@pytest.mark.parametrize("header", [
    "X-Accel-Redirect: @gp_error",
    "X-Accel-Redirect: /.well-known/acme-challenge/token",
    "X-Accel-Redirect: /second",
    "X-Accel-Buffering: yes\r\nX-Test-Response-Header: X-Accel-Limit-Rate: 1",
])
def test_a_backend_answer_cannot_steer_the_edge(edge, header):
    """A tenant's app answering X-Accel-* reaches no internal location of the edge, makes no
    second request and does not throttle the reply: the app's own answer is relayed as is."""
    router, backend = edge
    reply = raw_request(router.port, b"GET / HTTP/1.1\r\n" + H + b"X-Test-Response-Header: "
                        + header.encode() + b"\r\nConnection: close\r\n\r\n", timeout=3, total=5)
    assert _status(reply) == 200, reply[:300]
    head, _, body = reply.partition(b"\r\n\r\n")
    assert b'"backend": "a"' in body
    assert b"x-accel" not in head.lower()
    assert backend.paths == ["/"]
