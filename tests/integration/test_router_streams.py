"""Router conformance: forwarded headers, chunked and streamed bodies, 100-continue, WebSocket."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import time

from .routerkit import backends, make_config, running_router, set_route

HOST = "app.example.com"


def _headers(body: bytes) -> dict[str, list[str]]:
    result: dict[str, list[str]] = {}
    for name, value in json.loads(body)["headers"]:
        result.setdefault(name.lower(), []).append(value)
    return result


def test_forwarded_headers(redis_url, instance):
    with backends("a") as (a,), running_router(make_config(redis_url, instance)) as router:
        set_route(redis_url, instance, HOST, a.url)
        conn = http.client.HTTPConnection("127.0.0.1", router.port, timeout=5)
        conn.request("GET", "/", headers={
            "Host": HOST, "X-Forwarded-For": "203.0.113.9", "X-Real-IP": "6.6.6.6",
            "X-Forwarded-Proto": "https", "Connection": "keep-alive, X-Secret",
            "X-Secret": "hop", "Keep-Alive": "timeout=5", "Proxy-Connection": "keep-alive",
            "TE": "trailers", "Trailer": "X-Sum", "X-Kept": "yes",
        })
        seen = _headers(conn.getresponse().read())
        conn.close()
        assert seen["x-forwarded-for"] == ["203.0.113.9, 127.0.0.1"]
        assert seen["x-real-ip"] == ["127.0.0.1"]
        assert seen["x-forwarded-proto"] == ["http"]
        assert seen["x-forwarded-port"] == [str(router.port)]
        assert seen["host"] == [HOST]
        for hop in ("x-secret", "keep-alive", "connection", "proxy-connection", "te", "trailer"):
            assert hop not in seen
        assert seen["x-kept"] == ["yes"]
        conn = http.client.HTTPConnection("127.0.0.1", router.port, timeout=5)
        conn.request("GET", "/", headers={"Host": HOST})
        seen = _headers(conn.getresponse().read())
        assert seen["x-forwarded-for"] == ["127.0.0.1"]
        conn.close()


def test_chunked_request_and_response(redis_url, instance):
    with backends("a") as (a,), running_router(make_config(redis_url, instance)) as router:
        set_route(redis_url, instance, HOST, a.url)
        conn = http.client.HTTPConnection("127.0.0.1", router.port, timeout=5)
        parts = [b"hello ", b"chunked ", b"world" * 1000]
        conn.request("POST", "/chunked", body=iter(parts), encode_chunked=True,
                     headers={"Host": HOST})
        resp = conn.getresponse()
        assert resp.getheader("Transfer-Encoding") == "chunked"
        payload = json.loads(resp.read())
        assert payload["body"] == b"".join(parts).decode()
        # the same connection goes on working after a chunked exchange
        conn.request("GET", "/again", headers={"Host": HOST})
        assert json.loads(conn.getresponse().read())["path"] == "/again"
        conn.close()


def test_large_body_streams_both_ways(redis_url, instance):
    with backends("a") as (a,), running_router(make_config(redis_url, instance)) as router:
        set_route(redis_url, instance, HOST, a.url)
        body = bytes(range(256)) * 20000  # 5 MB
        conn = http.client.HTTPConnection("127.0.0.1", router.port, timeout=10)
        conn.request("PUT", "/big", body=body, headers={"Host": HOST})
        resp = conn.getresponse()
        payload = json.loads(resp.read())
        assert payload["body"].encode("latin-1") == body
        conn.close()


def test_expect_100_continue(redis_url, instance):
    with backends("a") as (a,), running_router(make_config(redis_url, instance)) as router:
        set_route(redis_url, instance, HOST, a.url)
        with socket.create_connection(("127.0.0.1", router.port), timeout=5) as s:
            s.sendall(
                b"POST /upload HTTP/1.1\r\nHost: " + HOST.encode() + b"\r\n"
                b"Content-Length: 5\r\nExpect: 100-continue\r\n\r\n"
            )
            interim = s.recv(4096)
            assert interim.startswith(b"HTTP/1.1 100 ")
            s.sendall(b"12345")
            reply = b""
            while b'"body": "12345"' not in reply:
                piece = s.recv(65536)
                assert piece
                reply += piece
            assert b"HTTP/1.1 200 " in reply


def test_streaming_response_arrives_before_it_ends(redis_url, instance):
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    release = threading.Event()

    class Slow(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_GET(self):
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"5\r\nfirst\r\n")
            self.wfile.flush()
            release.wait(5)
            self.wfile.write(b"4\r\nlast\r\n0\r\n\r\n")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with running_router(make_config(redis_url, instance)) as router:
            set_route(redis_url, instance, HOST, f"http://127.0.0.1:{server.server_address[1]}")
            with socket.create_connection(("127.0.0.1", router.port), timeout=5) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: " + HOST.encode() + b"\r\n\r\n")
                got = b""
                while b"first" not in got:
                    got += s.recv(4096)
                assert b"last" not in got
                release.set()
                while not got.endswith(b"0\r\n\r\n"):
                    got += s.recv(4096)
    finally:
        release.set()
        server.shutdown()
        server.server_close()


def test_websocket_upgrade_is_tunnelled(redis_url, instance):
    with backends("a") as (a,), running_router(make_config(redis_url, instance)) as router:
        set_route(redis_url, instance, HOST, a.url)
        with socket.create_connection(("127.0.0.1", router.port), timeout=5) as s:
            s.sendall(
                b"GET /ws HTTP/1.1\r\nHost: " + HOST.encode() + b"\r\n"
                b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            head = b""
            while b"\r\n\r\n" not in head:
                head += s.recv(4096)
            assert head.startswith(b"HTTP/1.1 101 ")
            for message in (b"ping", b"second frame", b"x" * 100000):
                s.sendall(message)
                got = b""
                deadline = time.monotonic() + 5
                while len(got) < len(message) and time.monotonic() < deadline:
                    got += s.recv(65536)
                assert got == message.upper()


def test_http10_backend_read_until_close(redis_url, instance):
    """A backend that answers HTTP/1.0 without Content-Length and closes (body ends at EOF)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Old(BaseHTTPRequestHandler):  # protocol_version stays HTTP/1.0
        def log_message(self, *args):
            pass

        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"no length here " * 1000)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Old)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with running_router(make_config(redis_url, instance)) as router:
            set_route(redis_url, instance, HOST, f"http://127.0.0.1:{server.server_address[1]}")
            for _ in range(3):  # each on a new connection: the router must close after it
                conn = http.client.HTTPConnection("127.0.0.1", router.port, timeout=5)
                conn.request("GET", "/", headers={"Host": HOST})
                resp = conn.getresponse()
                assert resp.status == 200
                assert resp.read() == b"no length here " * 1000
                conn.close()
    finally:
        server.shutdown()
        server.server_close()


def test_slow_reader_then_reuse_of_the_pooled_connection(redis_url, instance):
    """A client that reads a big response late makes the router pause the backend; the
    pooled connection must work again for the next request. (The case where the response
    ends while the backend is paused depends on timing; this test does not force it.)"""
    with backends("a") as (a,), running_router(make_config(redis_url, instance)) as router:
        set_route(redis_url, instance, HOST, a.url)
        body = b"z" * 8_000_000
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)  # before connecting
            s.settimeout(10)
            s.connect(("127.0.0.1", router.port))
            s.sendall(b"PUT /big HTTP/1.1\r\nHost: " + HOST.encode() +
                      b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            time.sleep(0.5)  # let the router's buffers fill up: back-pressure
            got = b""
            while not got.endswith(b"}"):
                got += s.recv(65536)
            assert b"HTTP/1.1 200 " in got
        for _ in range(3):
            conn = http.client.HTTPConnection("127.0.0.1", router.port, timeout=5)
            conn.request("GET", "/after", headers={"Host": HOST})
            assert conn.getresponse().status == 200
            conn.close()


def test_half_close_before_the_body_ends_is_cut_off_at_once(redis_url, instance):
    """nginx reads the whole body before it proxies: a body cut short never reaches the
    backend, and the connection ends at once (nginx closes without an answer)."""
    with backends("a") as (a,), running_router(make_config(redis_url, instance)) as router:
        set_route(redis_url, instance, HOST, a.url)
        sock = socket.create_connection(("127.0.0.1", router.port), timeout=5)
        sock.sendall(f"POST /upload HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 100\r\n"
                     "\r\nonly part".encode())
        time.sleep(0.2)
        started = time.monotonic()
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        sock.close()
        assert answer == b"" or answer.startswith(b"HTTP/1.1 400 ")
        assert time.monotonic() - started < 3
        assert a.hits == 0


SPOOFED = {
    "X-Forwarded-Host": "evil.example", "X-Forwarded-Ssl": "on",
    "X-Forwarded-Scheme": "https", "X-Forwarded-Prefix": "/evil",
    "x-FORWARDED-server": "evil", "Forwarded": "for=6.6.6.6;host=evil.example;proto=https",
    "X-Forwarded-Proto": "https", "X-Forwarded-Port": "443", "X-Forwarded": "for=6.6.6.6",
}


def _assert_from_the_edge(seen: dict[str, list[str]], scheme: str, port: int) -> None:
    assert seen["x-forwarded-host"] == seen["host"]  # the Host the app gets, port and all
    assert seen["host"][0] in (HOST, f"{HOST}:{port}")
    assert seen["x-forwarded-proto"] == [scheme]
    assert seen["x-forwarded-port"] == [str(port)]
    for name in ("x-forwarded-ssl", "x-forwarded-scheme", "x-forwarded-prefix",
                 "x-forwarded-server", "forwarded"):
        assert name not in seen, name
    assert seen["x-forwarded"] == ["for=6.6.6.6"]  # not a forwarding header of any framework


def test_forwarding_headers_come_from_the_edge_only(redis_url, instance):
    """A client's X-Forwarded-* (but For, which the edge appends to) and Forwarded never
    reach the app: Rack, Rails, Spring and Symfony take the scheme, host or path prefix
    from them. Also with more headers than the edge reads through the FFI (its slow
    path)."""
    with backends("a") as (a,), running_router(make_config(redis_url, instance)) as router:
        set_route(redis_url, instance, HOST, a.url)
        for padding in (0, 70):
            conn = http.client.HTTPConnection("127.0.0.1", router.port, timeout=5)
            conn.request("GET", "/", headers={
                "Host": HOST, "X-Forwarded-For": "203.0.113.9", **SPOOFED,
                **{f"X-Pad-{i}": "1" for i in range(padding)},
            })
            seen = _headers(conn.getresponse().read())
            conn.close()
            _assert_from_the_edge(seen, "http", router.port)
            assert seen["x-forwarded-for"] == ["203.0.113.9, 127.0.0.1"]
            assert len([n for n in seen if n.startswith("x-pad-")]) == padding


def test_forwarding_headers_come_from_the_edge_only_over_http2(redis_url, instance):
    """The same for HTTP/2 (curl --http2 over TLS)."""
    config = make_config(redis_url, instance, https_listen=("127.0.0.1", 0))
    with backends("a") as (a,), running_router(config) as router:
        set_route(redis_url, instance, HOST, a.url)
        cmd = ["curl", "-sk", "--http2", "--max-time", "10", "-w", "\n%{http_version}",
               "--resolve", f"{HOST}:{router.tls_port}:127.0.0.1",
               *[arg for name, value in SPOOFED.items() for arg in ("-H", f"{name}: {value}")],
               f"https://{HOST}:{router.tls_port}/"]
        out = subprocess.run(cmd, capture_output=True, timeout=20, check=True).stdout
        body, _, version = out.rpartition(b"\n")
        assert version == b"2"
        seen = _headers(body)
        _assert_from_the_edge(seen, "https", router.tls_port)


def _raw(port: int, head: bytes) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(head)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return int(data.split(b" ", 2)[1]), data


def test_absolute_form_target_and_host_must_agree(redis_url, instance):
    """RFC 9112 lets a request name its host in the target (`GET http://host/path`);
    nginx routes on that host, and the app gets the Host header. A Host naming another
    host (a password-reset link built from it would point at the client's) is a 400 that
    never reaches the app; the same host, in any case, with a port or a trailing dot, is
    served."""
    with backends("a") as (a,), running_router(make_config(redis_url, instance)) as router:
        set_route(redis_url, instance, HOST, a.url)
        for host in ("evil.example", "evil.example:8443", f"{HOST}.evil.example", "[::1]"):
            status, _ = _raw(router.port, f"GET http://{HOST}/reset HTTP/1.1\r\nHost: {host}"
                             "\r\nConnection: close\r\n\r\n".encode())
            assert status == 400, host
            # also where the edge reads the head the slow way (more than 64 headers)
            pad = "".join(f"X-Pad-{i}: 1\r\n" for i in range(70))
            status, _ = _raw(router.port, f"GET http://{HOST}/reset HTTP/1.1\r\nHost: {host}"
                             f"\r\n{pad}Connection: close\r\n\r\n".encode())
            assert status == 400, host
        assert a.hits == 0
        for host in (HOST, HOST.upper(), f"{HOST}:{router.port}", f"{HOST}."):
            status, _ = _raw(router.port, f"GET http://{HOST}/ HTTP/1.1\r\nHost: {host}"
                                "\r\nConnection: close\r\n\r\n".encode())
            assert status == 200, host
        status, _ = _raw(router.port, f"GET http://{HOST}/ HTTP/1.0\r\n\r\n".encode())
        assert status == 200  # HTTP/1.0 without Host: the app gets none
