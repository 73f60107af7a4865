"""Helpers for the edge conformance tests: real backends, an nginx edge, raw HTTP."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import redis

from gitpaas.edge import Edge, EdgeConfig


class Handler(BaseHTTPRequestHandler):
    """Echoes the request as JSON; headers starting with X-Test- change its behaviour."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _any(self) -> None:
        self.server.hits += 1  # type: ignore[attr-defined]
        self.server.paths.append(self.path)  # type: ignore[attr-defined]
        if self.headers.get("Upgrade", "").lower() == "websocket":
            self._tunnel()
            return
        body = self._body()
        forced = self.server.force_status  # type: ignore[attr-defined]
        status = forced or int(self.headers.get("X-Test-Status", "200"))
        payload = json.dumps(
            {
                "backend": self.server.name,  # type: ignore[attr-defined]
                "method": self.command,
                "path": self.path,
                "headers": [[k, v] for k, v in self.headers.items()],
                "body": body.decode("latin-1"),
            }
        ).encode()
        self.send_response(status)
        if self.headers.get("X-Test-Retry-After"):
            self.send_header("Retry-After", "1")
        for extra in self.headers.get_all("X-Test-Response-Header") or []:
            name, _, value = extra.partition(":")
            self.send_header(name.strip(), value.strip())
        self.send_header("Content-Type", "application/json")
        if self.path.startswith("/chunked"):
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(0, len(payload), 7):
                piece = payload[i : i + 7]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            return
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _tunnel(self) -> None:
        self.wfile.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\n\r\n"
        )
        self.wfile.flush()
        while True:
            data = self.connection.recv(65536)
            if not data:
                break
            self.connection.sendall(data.upper())
        self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _any


class Backend:
    """A threaded HTTP/1.1 backend on 127.0.0.1 (keep-alive, Expect: 100-continue)."""

    def __init__(self, name: str) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.name = name  # type: ignore[attr-defined]
        self.server.hits = 0  # type: ignore[attr-defined]
        self.server.paths = []  # type: ignore[attr-defined]
        self.server.force_status = 0  # type: ignore[attr-defined]
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def hits(self) -> int:
        return self.server.hits  # type: ignore[attr-defined]

    @property
    def paths(self) -> list[str]:
        """The paths of the requests this backend parsed, in order."""
        return self.server.paths  # type: ignore[attr-defined]

    def force(self, status: int) -> None:
        """Answer every request with ``status`` (0: normal)."""
        self.server.force_status = status  # type: ignore[attr-defined]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def free_port() -> int:
    """A port nobody listens on (closed at once: connecting to it is refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The temporary directories make_config() made; removed after each test (tests/integration/
# conftest.py), whether or not the test removed them itself.
made_dirs: list[Path] = []


def make_config(redis_url: str, instance: str, **kw: object) -> EdgeConfig:
    """An edge of its own (a temporary directory, free ports on 127.0.0.1). Listen
    addresses given as ("127.0.0.1", 0) get a free port."""
    if "directory" not in kw:
        made_dirs.append(Path(tempfile.mkdtemp(prefix="gp-edge-")))
        kw["directory"] = made_dirs[-1]
    base: dict[str, object] = {
        "listen": ("127.0.0.1", 0),
        "redis_url": redis_url,
        "prefix": f"{instance}:",
        "dead_ttl": 30.0,
        "cache_ttl": 10.0,
    }
    base.update(kw)
    for key in ("listen", "https_listen", "admin_listen"):
        if base.get(key) == ("127.0.0.1", 0):
            base[key] = ("127.0.0.1", free_port())
    return EdgeConfig(**base)  # type: ignore[arg-type]


@dataclass
class EdgeHandle:
    """A running edge: its ports, and the Edge that stops it."""

    edge: Edge
    config: EdgeConfig

    @property
    def port(self) -> int:
        return self.config.listen[1]

    @property
    def tls_port(self) -> int:
        assert self.config.https_listen
        return self.config.https_listen[1]

    @property
    def admin_port(self) -> int:
        assert self.config.admin_listen
        return self.config.admin_listen[1]

    @property
    def certs_dir(self) -> Path:
        return self.config.certs_dir


def wait_subscribed(redis_url: str, prefix: str, timeout: float = 5.0) -> None:
    """Until an edge listens on ``<prefix>routes`` (pub/sub)."""
    client = redis.Redis.from_url(redis_url)
    try:
        deadline = time.monotonic() + timeout
        while client.pubsub_numsub(f"{prefix}routes")[0][1] < 1:
            assert time.monotonic() < deadline, "the edge did not subscribe"
            time.sleep(0.01)
    finally:
        client.close()


@contextlib.contextmanager
def running_router(config: EdgeConfig) -> Iterator[EdgeHandle]:
    """nginx with the edge's config, stopped (and its directory removed) afterwards."""
    edge = Edge(config)
    try:
        edge.start()
        wait_subscribed(config.redis_url, config.prefix)
        yield EdgeHandle(edge, config)
    finally:
        edge.stop(graceful=False)
        shutil.rmtree(config.directory, ignore_errors=True)


@contextlib.contextmanager
def backends(*names: str) -> Iterator[list[Backend]]:
    started = [Backend(n) for n in names]
    try:
        yield started
    finally:
        for b in started:
            b.close()


def set_route(redis_url: str, instance: str, host: str, *urls: str, ident: str = "app") -> None:
    """Write a frontend as Hipache wants it and announce it."""
    client = redis.Redis.from_url(redis_url)
    key = f"{instance}:frontend:{host}"
    pipe = client.pipeline()
    pipe.delete(key)
    pipe.rpush(key, ident, *urls)
    pipe.delete(f"{instance}:dead:{host}")
    pipe.publish(f"{instance}:routes", host)
    pipe.execute()
    client.close()


def raw_request(port: int, data: bytes, timeout: float = 5.0,
                total: float | None = None) -> bytes:
    """Send ``data``, read until the router closes the connection (or ``total`` seconds)."""
    deadline = time.monotonic() + total if total is not None else None
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        while deadline is None or time.monotonic() < deadline:
            try:
                piece = s.recv(65536)
            except TimeoutError:
                break
            if not piece:
                break
            chunks.append(piece)
        return b"".join(chunks)


def get(port: int, host: str, path: str = "/", **headers: str) -> tuple[int, dict, bytes]:
    """One GET through the router on a fresh connection: (status, headers, body)."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path, headers={"Host": host, **headers})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def backend_of(body: bytes) -> str:
    return json.loads(body)["backend"]
