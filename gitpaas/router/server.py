"""Serving: the :class:`Router` (one event loop), ``run`` (workers) and ``start_in_thread``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import resource
import signal
import socket
import threading
from collections.abc import Coroutine
from typing import Any

import uvloop

from ..settings import Settings
from . import tls
from .config import RouterConfig
from .metrics import Metrics
from .proxy import ClientConn, Pool
from .routecache import RouteCache

log = logging.getLogger("gitpaas.router")


class Router:
    """The proxy of one process: listening socket, route cache, backend pool, metrics."""

    def __init__(self, config: RouterConfig, worker: int = 0) -> None:
        self.config = config
        self.worker = worker
        # The port HTTP requests are redirected to (router_https_redirect), 0: none.
        self.https_port = 0
        self.tls_port = 0
        self.loop = asyncio.get_running_loop()
        self.cache = RouteCache(config.redis_url, config.prefix, config.cache_ttl, config.dead_ttl)
        self.pool = Pool(config.pool_size, config.pool_idle)
        self.metrics = Metrics(worker)
        self.clients: set[ClientConn] = set()
        self.hosts: dict[bytes, str] = {}  # Host header -> normalised host
        self.port = 0
        # Coarse time for deadlines, refreshed by the sweeper (cheaper than a clock read).
        self.clock = self.loop.time()
        self._servers: list[asyncio.base_events.Server] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self, reuse_port: bool = False) -> int:
        """Listen on ``config.listen`` (and the admin port); return the bound HTTP port."""
        self.cache.start()
        host, port = self.config.listen
        server = await self.loop.create_server(
            lambda: ClientConn(self), host, port, reuse_port=reuse_port or None, backlog=2048
        )
        self._servers.append(server)
        self.port = server.sockets[0].getsockname()[1]
        if self.config.https_listen is not None:
            await self._start_tls(reuse_port)
        if self.config.admin_listen is not None:
            admin_host, admin_port = self.config.admin_listen
            admin_port = admin_port + self.worker if admin_port else 0
            admin = await asyncio.start_server(self._admin, admin_host, admin_port)
            self._servers.append(admin)
            self.admin_port = admin.sockets[0].getsockname()[1]
        self._sweeper = self.loop.create_task(self._sweep())
        return self.port

    async def _start_tls(self, reuse_port: bool) -> None:
        """Listen for HTTPS with the certificates of ``tls_dir`` (chosen by SNI)."""
        context = tls.server_context(self.config.tls_dir)
        host, port = self.config.https_listen  # type: ignore[misc]
        server = await self.loop.create_server(
            lambda: ClientConn(self, "https"), host, port, ssl=context,
            reuse_port=reuse_port or None, backlog=2048,
        )
        self._servers.append(server)
        self.tls_port = server.sockets[0].getsockname()[1]
        if self.config.https_redirect:
            self.https_port = self.tls_port

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` as a task kept alive until it ends."""
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _sweep(self) -> None:
        """Enforce client deadlines and close long-idle backend connections (4 times a second)."""
        while True:
            await asyncio.sleep(0.25)
            now = self.clock = self.loop.time()
            for client in [c for c in self.clients if c.deadline is not None and c.deadline < now]:
                client.timeout()
            self.pool.sweep(now)

    async def _admin(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """A minimal HTTP/1.0 server for ``GET /metrics``."""
        try:
            line = await asyncio.wait_for(reader.readline(), 5)
            while (await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n", b""):
                pass
            if line.split(b" ")[1:2] == [b"/metrics"]:
                body = self.metrics.render(len(self.cache.entries)).encode()
                status, ctype = "200 OK", "text/plain; version=0.0.4"
            else:
                body, status, ctype = b"not found\n", "404 Not Found", "text/plain"
            writer.write(
                f"HTTP/1.0 {status}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n".encode() + body
            )
            await writer.drain()
        except (TimeoutError, OSError, IndexError):
            pass
        finally:
            writer.close()

    async def close(self) -> None:
        """Stop listening, close every connection and the Redis clients."""
        for server in self._servers:
            server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        for client in list(self.clients):
            client.close()
        self.pool.close_all()
        for task in list(self._tasks):
            task.cancel()
        await self.cache.close()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2)


async def _serve(config: RouterConfig, worker: int, stop: asyncio.Event, reuse_port: bool) -> None:
    router = Router(config, worker)
    await router.start(reuse_port=reuse_port)
    log.info("router worker %d listening on %s:%d", worker, config.listen[0], router.port)
    try:
        await stop.wait()
    finally:
        await router.close()


def _raise_fd_limit() -> None:
    """Allow as many open files as the hard limit does (one per connection, both sides)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _serve_process(config: RouterConfig, worker: int, parent: int | None = None) -> None:
    """The body of one worker process: serve until SIGTERM or SIGINT (or, for a forked
    worker, until its parent ``parent`` is gone)."""
    for sig in (signal.SIGTERM, signal.SIGINT):  # not the parent's handler, inherited
        signal.signal(sig, signal.SIG_DFL)
    _raise_fd_limit()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        if parent is not None:
            loop.create_task(_watch_parent(parent, stop))
        await _serve(config, worker, stop, reuse_port=True)

    uvloop.run(main())


async def _watch_parent(parent: int, stop: asyncio.Event) -> None:
    """Stop when the parent process is gone (killed without passing SIGTERM on)."""
    while os.getppid() == parent:
        await asyncio.sleep(1.0)
    log.warning("router parent %d is gone; worker stopping", parent)
    stop.set()


def run(settings: Settings, workers: int = 1) -> None:
    """Serve on ``settings.http_listen`` until SIGTERM/SIGINT; ``workers`` > 1 forks
    that many processes, each with its own SO_REUSEPORT socket on the same port."""
    config = RouterConfig.from_settings(settings)
    if not settings.router_access_log:
        logging.getLogger("gitpaas.router.access").setLevel(logging.WARNING)
    if workers <= 1:
        _serve_process(config, 0)
        return
    host, port = config.listen
    # Reserve the port (bound, never listening) so that port 0 resolves once for all.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    reserve = socket.socket(family, socket.SOCK_STREAM)
    reserve.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    reserve.bind((host, port))
    config = _with_port(config, reserve.getsockname()[1])
    ctx = multiprocessing.get_context("fork")
    args = [(config, i, os.getpid()) for i in range(workers)]
    procs = [ctx.Process(target=_serve_process, args=args[i], daemon=True) for i in range(workers)]
    stopping = threading.Event()

    def forward(signum: int, _frame: object) -> None:
        stopping.set()
        for proc in procs:
            if proc.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)

    old = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for proc in procs:
            proc.start()
        while not stopping.is_set():
            for i, proc in enumerate(procs):
                if not proc.is_alive() and not stopping.is_set():
                    log.warning("router worker %d exited (%s); restarting", i, proc.exitcode)
                    procs[i] = ctx.Process(target=_serve_process, args=args[i], daemon=True)
                    procs[i].start()
            stopping.wait(0.5)
        for proc in procs:
            proc.join(10)
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        reserve.close()


def _with_port(config: RouterConfig, port: int) -> RouterConfig:
    import dataclasses

    return dataclasses.replace(config, listen=(config.listen[0], port))


class RouterHandle:
    """A router running on its own thread and event loop."""

    def __init__(self, config: RouterConfig) -> None:
        self.config = config
        self.port = 0
        self.admin_port = 0
        self.tls_port = 0
        self.router: Router | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="gitpaas-router", daemon=True)

    def _main(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            try:
                router = Router(self.config)
                self.port = await router.start()
                self.admin_port = getattr(router, "admin_port", 0)
                self.tls_port = router.tls_port
                self.router = router
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                self._error = exc
                self._ready.set()
                return
            self._ready.set()
            try:
                await self._stop.wait()
            finally:
                await router.close()

        uvloop.run(main())

    def start(self) -> RouterHandle:
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        """Stop the router and wait for its thread."""
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


def start_in_thread(settings: Settings | RouterConfig) -> RouterHandle:
    """Start a router on a background thread; ``handle.port`` is its bound port."""
    if isinstance(settings, RouterConfig):
        return RouterHandle(settings).start()
    config = RouterConfig.from_settings(settings)
    return RouterHandle(config).start()
