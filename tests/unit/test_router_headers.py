"""Unit tests of the request head the router sends to backends."""

from __future__ import annotations

from gitpaas.router.headers import chunk, request_head, simple_response


def _parse(head: bytes) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    lines = head.split(b"\r\n")
    assert lines[-2:] == [b"", b""]
    pairs = [tuple(line.split(b": ", 1)) for line in lines[1:-2]]
    return lines[0], pairs  # type: ignore[return-value]


def test_forwarded_headers_added_and_appended():
    head = request_head(
        b"GET", b"/x?y=1", "1.1",
        [(b"Host", b"a.com"), (b"X-Forwarded-For", b"1.1.1.1"), (b"Accept", b"*/*")],
        "10.0.0.9", "http", 80,
    )
    line, pairs = _parse(head)
    assert line == b"GET /x?y=1 HTTP/1.1"
    assert (b"X-Forwarded-For", b"1.1.1.1, 10.0.0.9") in pairs
    assert (b"X-Real-IP", b"10.0.0.9") in pairs
    assert (b"X-Forwarded-Proto", b"http") in pairs
    assert (b"X-Forwarded-Port", b"80") in pairs
    assert (b"Host", b"a.com") in pairs and (b"Accept", b"*/*") in pairs


def test_several_forwarded_for_headers_are_joined():
    head = request_head(
        b"GET", b"/", "1.1", [(b"x-forwarded-for", b"1.1.1.1"), (b"X-Forwarded-For", b"2.2.2.2")],
        "3.3.3.3", "https", 443,
    )
    assert b"X-Forwarded-For: 1.1.1.1, 2.2.2.2, 3.3.3.3\r\n" in head
    assert head.count(b"orwarded-For") == 1


def test_client_cannot_spoof_router_headers():
    head = request_head(
        b"GET", b"/", "1.1",
        [(b"X-Real-IP", b"6.6.6.6"), (b"X-Forwarded-Proto", b"https"), (b"X-Forwarded-Port", b"1")],
        "10.0.0.1", "http", 8080,
    )
    assert b"6.6.6.6" not in head and b"https" not in head
    assert b"X-Forwarded-Port: 8080\r\n" in head


def test_hop_by_hop_headers_are_dropped():
    head = request_head(
        b"POST", b"/", "1.1",
        [(b"Connection", b"keep-alive, X-Private"), (b"X-Private", b"1"), (b"Keep-Alive", b"5"),
         (b"TE", b"trailers"), (b"Transfer-Encoding", b"chunked"), (b"Content-Type", b"a/b")],
        "10.0.0.1", "http", 80, chunked=True,
    )
    _, pairs = _parse(head)
    names = [n.lower() for n, _ in pairs]
    for hop in (b"connection", b"x-private", b"keep-alive", b"te"):
        assert hop not in names
    assert names.count(b"transfer-encoding") == 1
    assert (b"Content-Type", b"a/b") in pairs


def test_upgrade_and_http10():
    head = request_head(b"GET", b"/ws", "1.1", [(b"Upgrade", b"websocket")], "1.2.3.4", "http",
                        80, upgrade=b"websocket")
    assert b"Connection: Upgrade\r\nUpgrade: websocket\r\n" in head
    head = request_head(b"GET", b"/", "1.0", [], "1.2.3.4", "http", 80)
    assert head.startswith(b"GET / HTTP/1.0\r\n") and b"Connection: close\r\n" in head


def test_router_responses():
    page = simple_response(404)
    assert page.startswith(b"HTTP/1.1 404 Not Found\r\n")
    head, body = page.split(b"\r\n\r\n", 1)
    assert f"Content-Length: {len(body)}".encode() in head
    assert b"Connection: close" in simple_response(400, keep_alive=False)
    assert chunk(b"abc") == b"3\r\nabc\r\n"
