"""An app's own proxy send and connect timeouts (edge:set) take effect at the edge, over
an edge whose global timeouts are far longer (test_edge_settings.py does the read one)."""

from __future__ import annotations

import http.client
import io
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from gitpaas import settings as settings_mod
from gitpaas.cli import LOCAL_ADMIN
from gitpaas.commands.registry import Context, run_command
from gitpaas.platform import Platform

from .routerkit import get, make_config, running_router

HOST = "slow.paas.localhost"
APP = "slow"


@pytest.fixture
def platform(tmp_path, instance, redis_url):
    p = Platform(settings_mod.load({"data_dir": tmp_path / "data", "instance": instance,
                                    "redis_url": redis_url}, environ={}))
    p.store.create_app(APP, "admin", "main")
    yield p
    p.routes.remove([HOST])
    p.routes.close()


def edge_set(platform: Platform, *args: str) -> None:
    """``edge:set slow ARGS`` as the local admin; it must succeed."""
    out, err = io.StringIO(), io.StringIO()
    ctx = Context(platform, LOCAL_ADMIN, io.BytesIO(), out.write, err.write, is_local=True)
    assert run_command(ctx, ["edge:set", APP, *args]) == 0, err.getvalue()


def post(port: int, size: int, timeout: float) -> tuple[int, float]:
    """POST ``size`` bytes: (status, seconds); 0 when the edge did not answer in time."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    began = time.monotonic()
    try:
        conn.request("POST", "/", body=b"x" * size, headers={"Host": HOST})
        resp = conn.getresponse()
        resp.read()
        return resp.status, time.monotonic() - began
    except TimeoutError:
        return 0, time.monotonic() - began
    finally:
        conn.close()


@contextmanager
def not_reading() -> Iterator[str]:
    """A backend that takes connections (the kernel does) and never reads: a tiny receive
    window, so a large body stalls the edge's writes after a few MB."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # accepted ones inherit it
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()


@contextmanager
def connect_hangs() -> Iterator[str]:
    """A port whose connects hang: its listener's accept queue (backlog 0) is full, so
    Linux drops further SYNs (no RST) and a connect waits for its timeout."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(2):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            fillers.append(s)
        probe = socket.socket()
        probe.settimeout(0.5)
        try:
            with pytest.raises(TimeoutError):
                probe.connect(("127.0.0.1", port))
        finally:
            probe.close()
        yield f"http://127.0.0.1:{port}"
    finally:
        for s in fillers:
            s.close()
        listener.close()


def test_an_apps_send_timeout_cuts_a_backend_that_does_not_read(platform, redis_url,
                                                                instance):
    """proxy-send-timeout=1: a 16 MB body to a backend that never reads gets 504 about a
    second after the edge's writes stall (the edge's own send timeout here is 30 s)."""
    config = make_config(redis_url, instance, backend_timeout=30.0)
    with not_reading() as url, running_router(config) as edge:
        # the setting first: the edge's first lookup of the host reads it with the route
        edge_set(platform, "proxy-send-timeout=1")
        platform.routes.swap(APP, [HOST], [url])
        status, took = post(edge.port, 16 * 1024 * 1024, timeout=10)
        assert status == 504, (status, took)
        assert took < 6


def test_an_apps_connect_timeout_cuts_a_connect_that_hangs(platform, redis_url, instance):
    """proxy-connect-timeout=1: a backend whose connects hang gets 504 in about a second
    (the edge's own connect timeout here is 20 s)."""
    config = make_config(redis_url, instance, connect_timeout=20.0, backend_timeout=30.0)
    with connect_hangs() as url, running_router(config) as edge:
        edge_set(platform, "proxy-connect-timeout=1")
        platform.routes.swap(APP, [HOST], [url])
        began = time.monotonic()
        status, _, body = get(edge.port, HOST)
        took = time.monotonic() - began
        assert status == 504, (status, body)
        assert 0.8 < took < 4
