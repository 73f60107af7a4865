"""TLS handshakes with made-up SNI names (an anonymous client's choice) do not grow the
edge's per-worker certificate cache without bound; real hosts' certificates stay served
and replaced when a new one is published."""

from __future__ import annotations

import random
import re
import socket
import ssl
import string
import time
import urllib.request

import redis

from .routerkit import make_config, running_router
from .test_router_tls import _self_signed, _served_name

FLOOD = 5000
# Names of ~250 bytes: the old cache kept ~1.2 KB per made-up name (the name, its parent's
# wildcard name, two entries); 5,000 of them grew a worker's live heap by ~6 MB.
GROWTH_BOUND = 3 * 1024 * 1024
_CLIENT = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
_CLIENT.check_hostname = False
_CLIENT.verify_mode = ssl.CERT_NONE


def _label(n: int) -> str:
    return "".join(random.choices(string.ascii_lowercase + string.digits, k=n))


def _client_hello(name: str) -> bytes:
    """The first flight of a TLS client offering SNI ``name`` (no socket: a memory BIO)."""
    obj = _CLIENT.wrap_bio(ssl.MemoryBIO(), (out := ssl.MemoryBIO()), server_hostname=name)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def _hello(port: int, name: str) -> None:
    """Send a ClientHello and wait for the server's first flight (the certificate was
    chosen: ssl_certificate_by_lua ran), then hang up."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(_client_hello(name))
        assert s.recv(5)[:1] == b"\x16"  # a handshake record: the ServerHello


def _metrics(admin_port: int) -> tuple[int, int]:
    """(the worker's Lua heap in bytes, SNI names in its certificate cache)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    heap = re.search(r"^gitpaas_edge_lua_memory_bytes (\d+)$", text, re.M)
    names = re.search(r"^gitpaas_edge_tls_names_cached (\d+)$", text, re.M)
    assert heap and names, text
    return int(heap.group(1)), int(names.group(1))


def _random_name() -> str:
    return ".".join([_label(60) for _ in range(4)] + ["test"])


def _flood(port: int, n: int, deadline: float) -> None:
    for _ in range(n):
        _hello(port, _random_name())
    assert time.monotonic() < deadline, "the handshakes took too long"


def _live_heap(admin_port: int, tls_port: int, deadline: float) -> int:
    """The heap after the collector's next cycle: made-up names (garbage, and what the
    cache keeps of them) until the heap shrinks, then the least of the next samples."""
    samples = [_metrics(admin_port)[0]]
    while len(samples) < 300:
        _flood(tls_port, 50, deadline)
        samples.append(_metrics(admin_port)[0])
        shrunk = [i for i in range(1, len(samples)) if samples[i] < samples[i - 1]]
        if shrunk and len(samples) - shrunk[0] >= 10:
            return min(samples[shrunk[0]:])
    raise AssertionError(f"the collector did not run: {samples}")


def test_random_sni_names_do_not_grow_the_certificate_cache(redis_url, instance):
    config = make_config(redis_url, instance, https_listen=("127.0.0.1", 0),
                         admin_listen=("127.0.0.1", 0), workers=1)
    client = redis.Redis.from_url(redis_url)
    with running_router(config) as edge:
        _self_signed(edge.certs_dir, "real.example.com")
        assert _served_name(edge.tls_port, "real.example.com") == "real.example.com"
        # after a cycle, with the misses' cache full (the old cache: a few thousand names)
        deadline = time.monotonic() + 120
        start = _live_heap(edge.admin_port, edge.tls_port, deadline)
        _flood(edge.tls_port, FLOOD, deadline)
        names = _metrics(edge.admin_port)[1]
        assert names <= 1000 + 1, names  # the misses' LRU, and the real host
        grown = _live_heap(edge.admin_port, edge.tls_port, deadline) - start
        assert grown < GROWTH_BOUND, f"{grown} bytes kept for {FLOOD} more made-up names"
        # the real host: still served, and its new certificate served once published
        assert _served_name(edge.tls_port, "real.example.com") == "real.example.com"
        (edge.certs_dir / "real.example.com.crt").rename(edge.certs_dir / "old.crt")
        (edge.certs_dir / "real.example.com.key").rename(edge.certs_dir / "old.key")
        _self_signed(edge.certs_dir, "real.example.com")
        new_crt = (edge.certs_dir / "real.example.com.crt").read_bytes()
        assert new_crt != (edge.certs_dir / "old.crt").read_bytes()
        client.publish(f"{instance}:certs", "real.example.com")
        published = time.monotonic()
        while _served_der(edge.tls_port, "real.example.com") != _der(new_crt):
            assert time.monotonic() - published < 1.0, "the new certificate was not served"
            time.sleep(0.02)
    client.close()


def _served_der(port: int, name: str) -> bytes:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, ctx.wrap_socket(
        raw, server_hostname=name
    ) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der
    return der


def _der(pem: bytes) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pem.decode())
