"""The proxy: a protocol object per client connection and per backend connection.

A client connection parses requests with httptools and proxies one at a time (pipelined
requests wait in a queue). The request head is rewritten (:func:`headers.request_head`);
bodies stream through (re-chunked when the client sent chunks). Responses are not
rewritten: the backend's bytes go to the client as they arrive, and a response parser only
finds where each response ends, so the backend connection can go back to the pool.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING

import httptools

from . import headers as h
from .lookup import Address, normalize_host, pick_backend
from .routecache import RedisUnavailable, Route

if TYPE_CHECKING:
    from .server import Router

access_log = logging.getLogger("gitpaas.router.access")
log = logging.getLogger("gitpaas.router")
INFO = logging.INFO
MAX_BUFFER = 256 * 1024
RETRY_STATUSES = (502, 503, 504)
# Host header values remembered with their normalised form (shared by a router's clients).
HOSTS_MAX = 50_000


class Exchange:
    """One request and what became of it."""

    __slots__ = (
        "target", "headers", "host_raw", "host", "method", "version", "keep_alive", "chunked",
        "upgrade", "body", "body_size", "body_seen", "complete", "head", "route", "index",
        "tried", "started", "status", "nbytes", "backend", "response_started", "done",
    )

    def __init__(self) -> None:
        self.target = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.host_raw: bytes | None = None
        self.host = ""
        self.method = b""
        self.version = "1.1"
        self.keep_alive = True
        self.chunked = False
        self.upgrade: bytes | None = None
        self.body: list[bytes] | None = None
        self.body_size = 0
        self.body_seen = False
        self.complete = False
        self.head: bytes | None = None
        self.route: Route | None = None
        self.index = -1
        self.tried: list[int] | None = None
        self.started = 0.0
        self.status = 0
        self.nbytes = 0
        self.backend = "-"
        self.response_started = False
        self.done = False


class Pool:
    """Idle keep-alive backend connections, by backend address (most recent first)."""

    def __init__(self, size: int, idle_seconds: float) -> None:
        self.size = size
        self.idle_seconds = idle_seconds
        self.idle: dict[Address, list[BackendConn]] = {}

    def acquire(self, addr: Address) -> BackendConn | None:
        conns = self.idle.get(addr)
        while conns:
            conn = conns.pop()
            if not conn.closed:
                conn.in_pool = False
                return conn
        return None

    def release(self, conn: BackendConn, now: float) -> None:
        conns = self.idle.setdefault(conn.addr, [])
        if len(conns) >= self.size:
            conn.transport.close()
            return
        conn.in_pool = True
        conn.idle_since = now
        conns.append(conn)

    def discard(self, conn: BackendConn) -> None:
        conns = self.idle.get(conn.addr)
        if conns and conn in conns:
            conns.remove(conn)
        conn.in_pool = False

    def sweep(self, now: float) -> None:
        """Close connections idle for longer than ``idle_seconds``."""
        limit = now - self.idle_seconds
        for addr, conns in list(self.idle.items()):
            keep = [c for c in conns if c.idle_since > limit and not c.closed]
            for conn in conns:
                if conn not in keep:
                    conn.in_pool = False
                    conn.transport.close()
            if keep:
                self.idle[addr] = keep
            else:
                del self.idle[addr]

    def close_all(self) -> None:
        for conns in self.idle.values():
            for conn in conns:
                conn.transport.close()
        self.idle.clear()


class BackendConn(asyncio.Protocol):
    """One connection to a backend; carries one exchange at a time."""

    def __init__(self, router: Router, addr: Address) -> None:
        self.router = router
        self.addr = addr
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.parser = httptools.HttpResponseParser(self)
        self.client: ClientConn | None = None
        self.exchange: Exchange | None = None
        self.closed = False
        self.in_pool = False
        self.idle_since = 0.0
        self.reused = False
        self._reset()

    def _reset(self) -> None:
        self.head_buf: bytearray | None = None
        self.got_bytes = False
        self.headers_done = False
        self.forwarding = False
        self.complete = False
        self.interim = False
        self.keep_alive = False
        self.status = 0
        self.tunnel = False

    # -- asyncio callbacks ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.in_pool:
            self.router.pool.discard(self)
        client, ex = self.client, self.exchange
        self.client = self.exchange = None
        if client is None or ex is None:
            return
        if client.backend is self:
            client.backend = None
        if self.tunnel:
            client.close()
        elif not self.forwarding:
            client.backend_lost(ex, self.reused, self.got_bytes)
        else:  # a response read until close ends here (or a truncated one)
            client.response_done(ex, keep=False)

    def pause_writing(self) -> None:
        if self.client is not None:
            self.client.pause("backend")

    def resume_writing(self) -> None:
        if self.client is not None:
            self.client.resume("backend")

    def data_received(self, data: bytes) -> None:
        if self.tunnel:
            if self.client is not None:
                self.client.transport.write(data)
            return
        ex, client = self.exchange, self.client
        if ex is None or client is None:
            self.transport.close()  # bytes nobody asked for
            return
        self.got_bytes = True
        upgraded = False
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            upgraded = self.status == 101
        except httptools.HttpParserError as exc:
            self._bad_response(ex, client, exc)
            return
        if not self.forwarding:
            if not self.headers_done:
                if self.head_buf is None:
                    self.head_buf = bytearray(data)
                else:
                    self.head_buf.extend(data)
                return
            if self.head_buf is not None:
                data = bytes(self.head_buf) + data
                self.head_buf = None
            if self.status in RETRY_STATUSES and not (
                self.status == 503 and b"\nretry-after:" in data.lower()
            ) and client.backend_refused(ex, self):
                return
            self.forwarding = True
            ex.response_started = True
            ex.status = self.status
        ex.nbytes += len(data)
        client.transport.write(data)
        client.deadline = self.router.clock + self.router.config.backend_timeout
        if upgraded:
            self.tunnel = True
            ex.status = 101
            client.tunnel_open(ex)
        elif self.complete:
            self._finish(ex, client)

    def _bad_response(self, ex: Exchange, client: ClientConn, exc: Exception) -> None:
        log.warning("invalid response from %s:%d: %s", *self.addr, exc)
        self.router.metrics.error("bad_response")
        self.client = self.exchange = None
        self.transport.close()
        if client.backend is self:
            client.backend = None
        if self.forwarding:
            client.response_done(ex, keep=False)
        else:
            client.respond(ex, 502, keep=False)

    # -- httptools callbacks ------------------------------------------------------------

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        self.status = status
        self.headers_done = True
        if 100 <= status < 200 and status != 101:
            self.interim = True
        elif self.exchange is not None and self.exchange.method == b"HEAD":
            self.complete = True
            self.keep_alive = self.parser.should_keep_alive()
            self.parser = httptools.HttpResponseParser(self)

    def on_message_complete(self) -> None:
        if self.interim:
            self.interim = False
            return
        self.complete = True
        self.keep_alive = self.parser.should_keep_alive()

    # -- the exchange ---------------------------------------------------------------------

    def attach(self, client: ClientConn, ex: Exchange) -> None:
        """Send ``ex``'s head and whatever body has arrived; stream the rest later."""
        self.client = client
        self.exchange = ex
        self._reset()
        client.backend = self
        if client.write_paused:  # still behind on an earlier answer
            self.transport.pause_reading()
        if ex.head is None:
            ex.head = h.request_head(
                ex.method, ex.target, ex.version, ex.headers, client.peer_ip,
                client.proto, client.local_port, chunked=ex.chunked, upgrade=ex.upgrade,
                suffix=client.fwd,
            )
        if not ex.body and not (ex.complete and ex.chunked):
            self.transport.write(ex.head)
            return
        parts = [ex.head]
        for piece in ex.body or ():
            parts.append(h.chunk(piece) if ex.chunked else piece)
        if ex.complete and ex.chunked:
            parts.append(h.LAST_CHUNK)
        ex.body = None
        ex.body_size = 0
        self.transport.write(b"".join(parts))
        client.resume("body")

    def _finish(self, ex: Exchange, client: ClientConn) -> None:
        self.client = self.exchange = None
        if client.backend is self:
            client.backend = None
        ex.status = self.status
        client.resume("backend")  # its write buffer no longer matters to this client
        keep = self.keep_alive
        if keep and not self.closed:
            self.reused = True
            self.transport.resume_reading()  # the client may have paused it
            self.router.pool.release(self, client.loop_time())
        else:
            self.transport.close()
        client.response_done(ex, keep=keep)

    def abandon(self) -> None:
        """Drop the exchange and the connection (its state is unknown)."""
        self.client = self.exchange = None
        self.transport.close()


class ClientConn(asyncio.Protocol):
    """One client connection: parses requests, routes each by its own Host header."""

    def __init__(self, router: Router, proto: str = "http") -> None:
        self.router = router
        self.proto = proto
        self.loop_time = router.loop.time
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.peer_ip = ""
        self.local_port = 0
        self.parsing: Exchange | None = None
        self.current: Exchange | None = None
        self.queue: deque[Exchange] = deque()
        self.backend: BackendConn | None = None
        self.head_bytes = 0
        self.head_size = 0
        self.in_head = True
        self.deadline: float | None = None
        self.closed = False
        self.paused: set[str] = set()
        self.upgrading = False
        self.tunnel = False
        self.pending = bytearray()
        self.close_after = False
        self.write_paused = False
        self.fwd: bytes = b""

    # -- asyncio callbacks ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        sock = transport.get_extra_info("sockname")
        self.peer_ip = peer[0] if peer else ""
        self.local_port = sock[1] if sock else 0
        self.fwd = h.forwarded_suffix(self.peer_ip, self.proto, self.local_port, None)
        self.deadline = self.router.clock + self.router.config.header_timeout
        self.router.clients.add(self)
        self.router.metrics.connections += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.router.clients.discard(self)
        self.router.metrics.connections -= 1
        backend, self.backend = self.backend, None
        if backend is not None:
            backend.abandon()
        ex = self.current
        if ex is not None and not ex.done and not self.tunnel:
            ex.status = ex.status or 499
            self._log(ex)

    def eof_received(self) -> bool | None:
        ex = self.current
        if ex is not None and not self.tunnel:
            if not ex.complete and not ex.response_started:
                # Half-closed before its request body ended: the request can never
                # complete, so answer now instead of waiting for the backend's timeout.
                backend, self.backend = self.backend, None
                if backend is not None:
                    backend.abandon()
                self.router.metrics.error("bad_request")
                self.respond(ex, 400, keep=False)
                return True
            self.close_after = True
            return True  # keep the write side open for the response
        return None

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.backend is not None:
            self.backend.transport.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.backend is not None:
            self.backend.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self.tunnel:
            if self.backend is not None:
                self.backend.transport.write(data)
            return
        if self.upgrading:
            self.pending.extend(data)
            if len(self.pending) > MAX_BUFFER:
                self.pause("upgrade")
            return
        if self.in_head:
            self.head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            if not self.closed:
                self.upgrading = True
                self.pending.extend(data[exc.args[0]:])
            return
        except httptools.HttpParserCallbackError:
            log.exception("router bug while parsing a request")
            self.close()
            return
        except httptools.HttpParserError:
            self._reject(400)
            return
        if self.in_head and self.head_bytes > self.router.config.max_header_bytes:
            self._reject(431)

    # -- httptools callbacks --------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.parsing = Exchange()
        self.in_head = True
        if self.current is None and self.deadline is not None:
            self.deadline = self.router.clock + self.router.config.header_timeout

    def on_url(self, url: bytes) -> None:
        ex = self.parsing
        if ex is not None:
            ex.target += url

    def on_header(self, name: bytes, value: bytes) -> None:
        ex = self.parsing
        if ex is None:
            return
        ex.headers.append((name, value))
        size = len(name)
        self.head_size += size + len(value)
        if size == 4 and name.lower() == b"host":
            ex.host_raw = value
        elif size == 17 and name.lower() == b"transfer-encoding":
            ex.chunked = b"chunked" in value.lower()
        elif size == 7 and name.lower() == b"upgrade":
            ex.upgrade = value

    def on_headers_complete(self) -> None:
        ex = self.parsing
        if ex is None or self.closed:
            return
        parser = self.parser
        self.in_head = False
        if self.head_size + len(ex.target) > self.router.config.max_header_bytes:
            self._reject(431)
            return
        self.head_bytes = self.head_size = 0
        ex.method = parser.get_method()
        ex.version = parser.get_http_version()
        ex.keep_alive = parser.should_keep_alive()
        if not parser.should_upgrade() or ex.method == b"CONNECT":
            ex.upgrade = None
        ex.started = self.loop_time()
        if self.current is None:
            self._start(ex)
        else:
            self.queue.append(ex)
            self.pause("queue")

    def on_body(self, body: bytes) -> None:
        ex = self.parsing
        if ex is None or ex.done:
            return  # a body nobody waits for any more: drained
        ex.body_seen = True
        backend = self.backend
        if backend is not None and backend.exchange is ex:
            backend.transport.write(h.chunk(body) if ex.chunked else body)
            self.deadline = self.router.clock + self.router.config.backend_timeout
            return
        if ex.body is None:
            ex.body = [body]
        else:
            ex.body.append(body)
        ex.body_size += len(body)
        if ex.body_size > MAX_BUFFER:
            self.pause("body")

    def on_message_complete(self) -> None:
        ex = self.parsing
        self.parsing = None
        self.in_head = True
        if ex is None:
            return
        ex.complete = True
        if ex.done:  # answered before its body ended; the body is drained now
            self._next()
            return
        backend = self.backend
        if ex.chunked and backend is not None and backend.exchange is ex:
            backend.transport.write(h.LAST_CHUNK)

    # -- routing ----------------------------------------------------------------------

    def _start(self, ex: Exchange) -> None:
        self.current = ex
        self.deadline = self.router.clock + self.router.config.backend_timeout
        raw = ex.host_raw
        hosts = self.router.hosts
        host = hosts.get(raw) if raw is not None else None
        if host is None:
            host = normalize_host(raw)
            if host is not None:
                if len(hosts) >= HOSTS_MAX:
                    hosts.clear()
                hosts[raw] = host  # type: ignore[index]
        if host is None:
            self.respond(ex, 400, keep=False)
            return
        ex.host = host
        if ex.method == b"CONNECT":
            self.respond(ex, 405, keep=False)
            return
        if host == "__ping__":
            self.respond(ex, 200)
            return
        if self.proto == "http" and self.router.https_port:
            self._redirect(ex, host)
            return
        route = self.router.cache.cached(host)
        if route is None:
            self.router.spawn(self._resolve(ex))
        else:
            self._dispatch(ex, route)

    async def _resolve(self, ex: Exchange) -> None:
        try:
            route = await self.router.cache.fetch(ex.host)
        except RedisUnavailable:
            self.router.metrics.error("redis_down")
            if not self.closed and self.current is ex:
                self.respond(ex, 503)
            return
        if not self.closed and self.current is ex:
            self._dispatch(ex, route)

    def _dispatch(self, ex: Exchange, route: Route) -> None:
        ex.route = route
        if not route.urls:
            self.router.metrics.error("unknown_host")
            self.respond(ex, 404)
            return
        if ex.tried is None and route.single:
            index = 0
            ex.tried = [0]
        else:
            picked = pick_backend(route.backends, route.dead_now(), ex.tried or ())
            if picked is None:
                self.router.metrics.error("no_live_backend")
                self.respond(ex, 502)
                return
            index = picked
            if ex.tried is None:
                ex.tried = [index]
            else:
                ex.tried.append(index)
        ex.index = index
        ex.backend = route.urls[index]
        addr = route.backends[index]
        assert addr is not None
        conn = self.router.pool.acquire(addr)
        if conn is not None:
            conn.attach(self, ex)
        else:
            self.router.spawn(self._connect(ex, addr))

    async def _connect(self, ex: Exchange, addr: Address) -> None:
        router = self.router
        try:
            _, conn = await asyncio.wait_for(
                router.loop.create_connection(lambda: BackendConn(router, addr), *addr),
                router.config.connect_timeout,
            )
        except TimeoutError:
            kind, status = "connect_timeout", 504
        except OSError:
            kind, status = "connect_refused", 502
        else:
            if self.closed or self.current is not ex:
                router.pool.release(conn, self.loop_time())
            else:
                conn.attach(self, ex)
            return
        router.metrics.error(kind)
        self._failed(ex, status)

    def _can_retry(self, ex: Exchange) -> bool:
        route = ex.route
        if route is None or ex.response_started or ex.body_seen or self.closed:
            return False
        if ex.tried is None or len(ex.tried) > self.router.config.retries:
            return False
        return pick_backend(route.backends, route.dead_now(), ex.tried) is not None

    def _failed(self, ex: Exchange, status: int) -> None:
        """The backend of ``ex`` could not be reached: mark it dead, retry or answer."""
        if ex.route is not None:
            self.router.cache.mark_dead(ex.route, ex.index)
        if self.closed or self.current is not ex:
            return
        if self._can_retry(ex):
            self._dispatch(ex, ex.route)  # type: ignore[arg-type]
        else:
            self.respond(ex, status)

    def backend_refused(self, ex: Exchange, conn: BackendConn) -> bool:
        """A 502/503/504 came back: mark dead; True when retrying elsewhere."""
        self.router.metrics.error("backend_5xx")
        if ex.route is not None:
            self.router.cache.mark_dead(ex.route, ex.index)
        if not self._can_retry(ex):
            return False
        conn.abandon()
        self.backend = None
        self._dispatch(ex, ex.route)  # type: ignore[arg-type]
        return True

    def backend_lost(self, ex: Exchange, reused: bool, got_bytes: bool) -> None:
        """The backend closed before answering."""
        if self.closed or self.current is not ex:
            return
        if reused and not got_bytes and not ex.body_seen and not ex.response_started:
            addr = ex.route.backends[ex.index] if ex.route else None
            if addr is not None:  # a stale pooled connection: try a fresh one
                self.router.spawn(self._connect(ex, addr))
                return
        self.router.metrics.error("backend_closed")
        self._failed(ex, 502)

    # -- answering ----------------------------------------------------------------------

    def respond(self, ex: Exchange, status: int, keep: bool = True) -> None:
        """Answer ``ex`` with the router's own short response."""
        if self.closed:
            return
        data = h.simple_response(status, keep_alive=keep and ex.keep_alive)
        ex.status = status
        ex.nbytes = len(data)
        ex.response_started = True
        self.transport.write(data)
        self.response_done(ex, keep)

    def response_done(self, ex: Exchange, keep: bool) -> None:
        """``ex`` is answered: log it, then close or go on with the next request."""
        if ex.done:
            return
        ex.done = True
        self._log(ex)
        self.current = None
        if self.closed:
            return
        if not keep or not ex.keep_alive or ex.upgrade is not None or self.close_after:
            self.close()
            return
        if ex.complete:
            self._next()
        else:  # drain the rest of its body first
            self.deadline = self.router.clock + self.router.config.header_timeout

    def _next(self) -> None:
        if self.queue:
            ex = self.queue.popleft()
            if not self.queue:
                self.resume("queue")
            self._start(ex)
        elif self.parsing is None:
            self.deadline = self.router.clock + self.router.config.idle_timeout

    def tunnel_open(self, ex: Exchange) -> None:
        """The backend switched protocols: relay bytes both ways from now on."""
        self.tunnel = True
        self.upgrading = False
        self.deadline = None
        if self.pending and self.backend is not None:
            self.backend.transport.write(bytes(self.pending))
        self.pending = bytearray()
        self.resume("upgrade")
        ex.done = True
        self._log(ex)

    def _redirect(self, ex: Exchange, host: str) -> None:
        """Send ``ex`` to the same URL over HTTPS (``router_https_redirect``)."""
        port = self.router.https_port
        authority = host if port == 443 else f"{host}:{port}"
        location = f"https://{authority}{ex.target.decode('latin-1')}"
        data = h.simple_response(301, keep_alive=ex.keep_alive, extra=[("Location", location)])
        ex.status = 301
        ex.nbytes = len(data)
        ex.response_started = True
        self.transport.write(data)
        self.response_done(ex, True)

    def _log(self, ex: Exchange) -> None:
        seconds = self.loop_time() - ex.started if ex.started else 0.0
        status = ex.status
        self.router.metrics.observe(status, seconds, ex.nbytes)
        if access_log.isEnabledFor(INFO):
            access_log.info(
                "%s %s %s %d %d %s %.1fms", ex.host or "-", ex.method.decode("latin-1"),
                ex.target.decode("latin-1"), status, ex.nbytes, ex.backend, seconds * 1000,
            )

    def _reject(self, status: int) -> None:
        ex = self.parsing or self.current or Exchange()
        self.router.metrics.error("bad_request")
        if ex is not self.current and self.current is not None:
            self.close()  # an answer is under way: cannot insert ours
            return
        ex.started = ex.started or self.loop_time()
        self.respond(ex, status, keep=False)

    def timeout(self) -> None:
        """The deadline passed: 504 while waiting for a backend, else close."""
        ex = self.current
        if ex is not None and not ex.response_started and not self.upgrading:
            self.router.metrics.error("backend_timeout")
            backend, self.backend = self.backend, None
            if backend is not None:
                backend.abandon()
            self.respond(ex, 504, keep=False)
            return
        if self.parsing is not None and self.current is None:
            self.router.metrics.error("header_timeout")
            self.transport.write(h.simple_response(408, keep_alive=False))
        self.close()

    # -- flow control --------------------------------------------------------------------

    def pause(self, reason: str) -> None:
        if not self.paused and not self.closed:
            self.transport.pause_reading()
        self.paused.add(reason)

    def resume(self, reason: str) -> None:
        if reason in self.paused:
            self.paused.discard(reason)
            if not self.paused and not self.closed:
                self.transport.resume_reading()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.transport.close()
