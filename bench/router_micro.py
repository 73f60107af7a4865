#!/usr/bin/env python3
"""The router's pure-Python cost per proxied request, without sockets or a kernel.

Drives ``ClientConn`` and ``BackendConn`` with in-memory transports: a request of four
headers in, a small response back, through the route cache and the backend pool. Measures
process CPU time, so other load on the machine matters much less than for bench/router.
Run: ``/opt/gitpaas-dev/bin/python bench/router_micro.py``.
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gitpaas.router.config import RouterConfig  # noqa: E402
from gitpaas.router.proxy import BackendConn, ClientConn  # noqa: E402
from gitpaas.router.routecache import Route  # noqa: E402
from gitpaas.router.server import Router  # noqa: E402

REQUEST = b"GET / HTTP/1.1\r\nHost: %s\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n"
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: text/plain\r\n"
    b"Content-Length: 6\r\n\r\nhello\n"
)


class MemoryTransport:
    """Just enough of asyncio.Transport for the protocols."""

    def __init__(self, info: dict[str, object]) -> None:
        self.info = info
        self.written = 0

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def get_extra_info(self, name: str, default: object = None) -> object:
        return self.info.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass


async def main(hosts: int, count: int = 200_000) -> None:
    router = Router(RouterConfig(listen=("127.0.0.1", 0), redis_url="redis://127.0.0.1:6379/15",
                                 prefix="micro:"))
    names = [f"app{i}.bench.test" for i in range(hosts)]
    for name in names:
        route = Route(name, name, "app", ["http://127.0.0.1:9"], set())
        route.fresh_until = float("inf")
        router.cache.entries[name] = route
    rng = random.Random(1)
    requests = [REQUEST % rng.choice(names).encode() for _ in range(count)]
    client = ClientConn(router)
    client.connection_made(MemoryTransport({"peername": ("127.0.0.1", 5555),  # type: ignore[arg-type]
                                            "sockname": ("127.0.0.1", 80)}))
    backend = BackendConn(router, ("127.0.0.1", 9))
    backend.connection_made(MemoryTransport({}))  # type: ignore[arg-type]
    router.pool.release(backend, 0.0)
    for _ in range(3):
        began = time.process_time()
        for request in requests:
            client.data_received(request)
            backend.data_received(RESPONSE)
        spent = time.process_time() - began
        print(f"{hosts} frontends: {spent / count * 1e6:.2f} us of Python per proxied request")


if __name__ == "__main__":
    for n in (1, 10_000):
        uvloop.run(main(n))
