"""Where an http(s) drain connects: to the address its check passed, never to a second
lookup of the name (DNS rebinding), with TLS verified against the name; a tenant's drain
whose name resolves to a local address never connects at all. Real TLS and HTTP servers
on 127.0.0.1; only the name's resolution is faked (no DNS server here)."""

from __future__ import annotations

import http.server
import socket
import ssl
import threading
import time
from collections.abc import Iterator

import pytest

from gitpaas import drains
from gitpaas.errors import Forbidden
from tests.e2e.test_drains import self_signed

PUBLIC = "1.1.1.1"  # what the fake resolver first answers (a global address); no packet
# ever goes there: the patched connect sends it to the local server or refuses it.


class Receiver:
    """An HTTP(S) server on 127.0.0.1 that records what reaches it."""

    def __init__(self, tls: tuple[str, str] | None = None, status: int = 204) -> None:
        self.requests: list[dict[str, str]] = []
        self.sni: list[str | None] = []
        self.connections = 0
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append({"path": self.path, "body": body.decode(),
                                          "host": self.headers.get("Host", ""),
                                          "auth": self.headers.get("Authorization", "")})
                self.send_response(status)
                if status in (301, 302, 307, 308):
                    self.send_header("Location", "http://127.0.0.1:6379/")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        class Server(http.server.ThreadingHTTPServer):
            def get_request(self):  # noqa: ANN202 - counts connections before TLS
                receiver.connections += 1
                return super().get_request()

        self.server = Server(("127.0.0.1", 0), Handler)
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            context.sni_callback = lambda sock, name, ctx: self.sni.append(name)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def send_one(drain: drains.Drain, ca_file: str = "") -> None:
    """One line through a drain's sender, synchronously (its errors raise)."""
    sender = drains.Sender(drain, ca_file=ca_file)
    try:
        sender._send([drains.Line("shop", "web.1", "v1", "hello", 0.0)])
    finally:
        sender.stop()


@pytest.fixture
def rebinding(monkeypatch) -> Iterator[dict[str, list]]:
    """``drain.test`` resolves to PUBLIC once, then to 127.0.0.1 (a rebinding name).
    Connections to PUBLIC go to the local receiver (set ``target``); any other address
    is recorded in ``refused`` and refused."""
    real_getaddrinfo, real_connect = socket.getaddrinfo, socket.socket.connect
    state: dict[str, list] = {"lookups": [], "refused": [], "target": []}

    def getaddrinfo(host, port, *args, **kwargs):  # noqa: ANN001, ANN202
        if host != "drain.test":
            return real_getaddrinfo(host, port, *args, **kwargs)
        address = PUBLIC if not state["lookups"] else "127.0.0.1"
        state["lookups"].append(address)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port)))]

    def connect(sock, address):  # noqa: ANN001, ANN202
        if address[0] == PUBLIC:
            return real_connect(sock, ("127.0.0.1", state["target"][0]))
        if address[0] == "127.0.0.1" and address[1] in state["target"][1:]:
            return real_connect(sock, address)  # the test's own admin drains
        state["refused"].append(address)
        raise ConnectionRefusedError(f"the test refuses {address}")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    yield state


def test_an_https_drain_connects_to_the_checked_address_and_verifies_the_name(
        tmp_path, rebinding):
    crt, key = self_signed(tmp_path, "drain.test")
    receiver = Receiver(tls=(crt, key))
    rebinding["target"] = [receiver.port]
    try:
        send_one(drains.Drain("https://drain.test/in?token=s3cret", "https", "drain.test",
                              443), crt)
    finally:
        receiver.close()
    # One lookup: the checked answer is the one connected to; the second answer
    # (127.0.0.1) was never asked for, so never reached.
    assert rebinding["lookups"] == [PUBLIC] and rebinding["refused"] == []
    assert receiver.sni == ["drain.test"]
    [request] = receiver.requests
    assert request["host"] == "drain.test" and request["path"] == "/in?token=s3cret"
    assert '"line": "hello"' in request["body"]


def test_a_user_and_password_in_the_url_are_sent_as_basic_authentication(rebinding):
    receiver = Receiver()
    rebinding["target"] = [0, receiver.port]
    try:
        url = f"http://user:t%40k@127.0.0.1:{receiver.port}/in"
        send_one(drains.Drain(url, "http", "127.0.0.1", receiver.port, private_ok=True))
    finally:
        receiver.close()
    [request] = receiver.requests
    assert request["auth"] == "Basic dXNlcjp0QGs="  # user:t@k


def test_the_certificate_is_checked_against_the_name_not_the_address(tmp_path, rebinding):
    crt, key = self_signed(tmp_path, "other.test")
    receiver = Receiver(tls=(crt, key))
    rebinding["target"] = [receiver.port]
    try:
        drain = drains.Drain("https://drain.test/in", "https", "drain.test", 443)
        with pytest.raises(ssl.SSLCertVerificationError, match="drain.test"):
            drains.post(drain, b"{}\n", ssl.create_default_context(cafile=crt))
    finally:
        receiver.close()
    assert receiver.requests == []


def test_redirects_are_not_followed(rebinding):
    receiver = Receiver(status=302)
    rebinding["target"] = [0, receiver.port]
    try:
        drain = drains.Drain(f"http://127.0.0.1:{receiver.port}/", "http", "127.0.0.1",
                             receiver.port, private_ok=True)
        with pytest.raises(OSError, match="redirect"):
            drains.post(drain, b"{}\n", ssl.create_default_context())
    finally:
        receiver.close()
    assert len(receiver.requests) == 1 and rebinding["refused"] == []


def test_a_tenants_drain_to_a_local_address_is_refused_and_never_connects(tmp_path):
    crt, key = self_signed(tmp_path, "localhost")
    receiver = Receiver(tls=(crt, key))
    try:
        url = f"https://localhost:{receiver.port}/in"
        with pytest.raises(Forbidden, match="not a public address"):
            drains.parse_url(url, admin=False)
        # A drain added while its name was public, now resolving to loopback: the
        # sender's check refuses every attempt, and keeps the lines queued.
        sender = drains.Sender(drains.Drain(url, "https", "localhost", receiver.port),
                               ca_file=crt)
        try:
            sender.put(drains.Line("shop", "web.1", "v1", "FLUSHALL", time.time()))
            time.sleep(2.5)
            assert sender.sent == 0 and len(sender.queue) == 1
        finally:
            sender.stop()
        # An admin's drain to the same place is allowed (and so the server was there).
        admin = drains.Sender(drains.Drain(url, "https", "localhost", receiver.port,
                                           private_ok=True), ca_file=crt)
        try:
            admin.put(drains.Line("shop", "web.1", "v1", "hello", time.time()))
            deadline = time.monotonic() + 10
            while admin.sent == 0 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert admin.sent == 1
        finally:
            admin.stop()
    finally:
        receiver.close()
    assert receiver.connections == 1 and len(receiver.requests) == 1
