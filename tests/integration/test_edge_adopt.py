"""Adopting a running edge (what ``gitpaas serve`` does at start): when the config it
renders or the Lua it ships differ from what nginx loaded, nginx is reloaded gracefully
(same master, no failed request, the change in effect); when nothing differs it is not
signalled at all. Against a real nginx."""

from __future__ import annotations

import dataclasses
import http.client
import shutil
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gitpaas.edge import Edge, EdgeConfig
from gitpaas.edge.config import LUA_DIR
from gitpaas.errors import ServiceError
from tests.integration.routerkit import (
    backends,
    free_port,
    get,
    make_config,
    running_router,
    set_route,
)

pytestmark = pytest.mark.timeout(180)
HOST = "adopt.example.com"
MARKER = """
local gp_test_error_page = M.error_page
function M.error_page()
  ngx.header["X-Test-Lua"] = "v2"
  return gp_test_error_page()
end
return M
"""


class FreshLoad(threading.Thread):
    """Bounded GETs through the edge, each on a new connection (so that a keep-alive
    connection an exiting worker closes between two requests, which any client retries,
    is not what is counted): at most ``limit`` requests or ``seconds``."""

    def __init__(self, port: int, host: str = HOST, seconds: float = 30.0,
                 limit: int = 5000) -> None:
        super().__init__(daemon=True)
        self.port, self.host, self.seconds, self.limit = port, host, seconds, limit
        self.stop = threading.Event()
        self.ok = 0
        self.failures: list[str] = []

    def run(self) -> None:
        deadline = time.monotonic() + self.seconds
        for _ in range(self.limit):
            if self.stop.is_set() or time.monotonic() > deadline:
                break
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            try:
                conn.request("GET", "/", headers={"Host": self.host, "Connection": "close"})
                resp = conn.getresponse()
                resp.read()
                if resp.status == 200:
                    self.ok += 1
                else:
                    self.failures.append(str(resp.status))
            except (OSError, http.client.HTTPException) as exc:
                self.failures.append(repr(exc))
            finally:
                conn.close()


def workers(pid: int) -> set[int]:
    return {int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


def wait_workers(pid: int, count: int, old: frozenset[int] = frozenset(),
                 timeout: float = 15.0) -> set[int]:
    """Until the master has ``count`` workers, none of them in ``old`` (the generation
    before a reload, which exits once its requests are done)."""
    deadline = time.monotonic() + timeout
    while len(found := workers(pid)) != count or found & old:
        assert time.monotonic() < deadline, f"workers of {pid}: {found}"
        time.sleep(0.05)
    return found


@pytest.fixture
def lua_copy() -> Iterator[Path]:
    """A copy of the shipped Lua modules that a test may change (an upgrade's new Lua)."""
    path = Path(tempfile.mkdtemp(prefix="gp-lua-"))
    shutil.copytree(LUA_DIR, path, dirs_exist_ok=True)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _under_load(port: int, adopt: EdgeConfig) -> tuple[int, FreshLoad]:
    """Adopt the running edge with ``adopt`` while requests flow; (its pid, the load)."""
    load = FreshLoad(port)
    load.start()
    deadline = time.monotonic() + 10
    while load.ok < 10 and time.monotonic() < deadline:
        time.sleep(0.02)
    before = load.ok
    pid = Edge(adopt).start()
    time.sleep(1.0)  # the old workers exit meanwhile
    deadline = time.monotonic() + 20
    while load.ok < before + 10 and load.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    load.stop.set()
    load.join(30)
    assert load.ok >= before + 10  # requests went on during and after the reload
    return pid, load


def _tls_accepts(port: int) -> bool:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=5, context=ctx)
    try:
        conn.request("GET", "/", headers={"Host": HOST})
        return conn.getresponse().status == 200
    finally:
        conn.close()


def test_adopt_reloads_a_changed_config_without_a_restart(redis_url, instance):
    config = make_config(redis_url, instance, workers=1)
    with backends("a") as (a,), running_router(config) as router:
        set_route(redis_url, instance, HOST, a.url)
        assert get(router.port, HOST)[0] == 200
        master = router.edge.pid()
        assert master is not None
        old = frozenset(wait_workers(master, 1))
        # a new release renders another config: two workers and an HTTPS port
        changed = dataclasses.replace(config, workers=2, https_listen=("127.0.0.1", free_port()))
        pid, load = _under_load(router.port, changed)
        assert pid == master  # adopted and reloaded, not restarted
        assert load.failures == [] and load.ok >= 20, (load.failures[:5], load.ok)
        first = wait_workers(master, 2, old)  # the new setting in effect
        assert _tls_accepts(changed.https_listen[1])  # type: ignore[index]
        assert "[emerg]" not in router.edge.error_tail(5000)
        # adopting again with nothing changed does not signal nginx: the same workers
        assert Edge(changed).start() == master
        time.sleep(0.5)
        assert workers(master) == first


def test_adopt_reloads_changed_lua_modules(redis_url, instance, lua_copy):
    config = make_config(redis_url, instance, lua_dir=lua_copy)
    with backends("a") as (a,), running_router(config) as router:
        set_route(redis_url, instance, HOST, a.url)
        master = router.edge.pid()
        status, headers, _ = get(router.port, "nowhere.example.com")
        assert status == 404 and "X-Test-Lua" not in headers
        # an upgrade ships new Lua; nginx.conf and conf.lua render the same
        module = lua_copy / "gitpaas_edge.lua"
        text = module.read_text()
        assert text.rstrip().endswith("return M")
        module.write_text(text.rstrip()[: -len("return M")] + MARKER)
        pid, load = _under_load(router.port, config)
        assert pid == master
        assert load.failures == [] and load.ok >= 20, (load.failures[:5], load.ok)
        status, headers, _ = get(router.port, "nowhere.example.com")
        assert status == 404 and headers.get("X-Test-Lua") == "v2"
        assert get(router.port, HOST)[0] == 200


def test_adopt_reloads_a_config_written_but_never_loaded(redis_url, instance):
    """A serve killed between writing nginx.conf and signalling nginx: the next one still
    reloads (the file on disk equals what it renders, but not what nginx loaded)."""
    config = make_config(redis_url, instance, workers=1)
    with backends("a") as (a,), running_router(config) as router:
        set_route(redis_url, instance, HOST, a.url)
        master = router.edge.pid()
        assert master is not None
        old = frozenset(wait_workers(master, 1))
        changed = dataclasses.replace(config, workers=2)
        assert Edge(changed).write_config()  # ... and killed here
        assert Edge(changed).start() == master
        wait_workers(master, 2, old)
        assert get(router.port, HOST)[0] == 200


def test_a_lua_error_in_new_modules_keeps_the_old_edge_serving(redis_url, instance, lua_copy):
    config = make_config(redis_url, instance, lua_dir=lua_copy)
    with backends("a") as (a,), running_router(config) as router:
        set_route(redis_url, instance, HOST, a.url)
        master = router.edge.pid()
        assert master is not None
        before = workers(master)
        loaded = router.edge.loaded()
        (lua_copy / "gitpaas_resp.lua").write_text("return {{{ broken\n")
        began = time.monotonic()
        # nginx -t runs no init_by_lua: the failed reload is seen in nginx's error log
        with pytest.raises(ServiceError, match="nginx did not reload: .*gitpaas_resp"):
            Edge(config).start()
        assert time.monotonic() - began < 5
        assert router.edge.pid() == master and workers(master) == before
        assert router.edge.loaded() == loaded  # tried again at the next adopt
        assert get(router.port, HOST)[0] == 200


def test_adopt_rewrites_conf_lua(redis_url, instance):
    """conf.lua (the Lua's settings: the HTTPS port of redirects here) follows the
    settings like nginx.conf does (it was written once and never replaced)."""
    config = make_config(redis_url, instance, https_redirect=True,
                         https_listen=("127.0.0.1", free_port()))
    with backends("a") as (a,), running_router(config) as router:
        set_route(redis_url, instance, HOST, a.url)
        status, headers, _ = get(router.port, HOST, "/x")
        assert (status, headers["Location"]) == (301, f"https://{HOST}:{router.tls_port}/x")
        moved = dataclasses.replace(config, https_listen=("127.0.0.1", free_port()))
        assert Edge(moved).start() == router.edge.pid()
        assert f"https_port = {moved.https_listen[1]}," in moved.lua_conf_path.read_text()  # type: ignore[index]
        assert moved.lua_conf_path.stat().st_mode & 0o777 == 0o600
        status, headers, _ = get(router.port, HOST, "/x")
        assert headers["Location"] == f"https://{HOST}:{moved.https_listen[1]}/x"  # type: ignore[index]


class QuotedFlood(threading.Thread):
    """An anonymous client that has nginx write "[emerg]" and "init_by_lua error" into its
    error log (quoted in the line about its too large body): bounded in requests and time,
    to 127.0.0.1 only."""

    REQUEST = (b"POST /[emerg]/init_by_lua%20error HTTP/1.1\r\nHost: flood.example.com\r\n"
               b"Content-Length: 99999999999\r\n\r\n")

    def __init__(self, port: int, seconds: float = 30.0, limit: int = 20000) -> None:
        super().__init__(daemon=True)
        self.port, self.seconds, self.limit = port, seconds, limit
        self.stop = threading.Event()
        self.sent = 0

    def run(self) -> None:
        deadline = time.monotonic() + self.seconds
        for _ in range(self.limit):
            if self.stop.is_set() or time.monotonic() > deadline:
                break
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
                    sock.sendall(self.REQUEST)
                    sock.recv(4096)
                self.sent += 1
            except OSError:
                time.sleep(0.01)

    def __enter__(self) -> QuotedFlood:
        self.start()
        deadline = time.monotonic() + 10
        while self.sent < 20 and time.monotonic() < deadline:
            time.sleep(0.02)
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.join(30)


def test_a_client_quoting_emerg_in_its_request_does_not_fail_a_reload(redis_url, instance,
                                                                      lua_copy):
    """The reload check reads only what nginx's master wrote about the reload: a request
    line an anonymous client chose ("POST /[emerg]...", logged with its too large body)
    does not make a good reload "fail"; a real Lua error during the flood still does."""
    config = make_config(redis_url, instance, workers=1, lua_dir=lua_copy)
    with backends("a") as (a,), running_router(config) as router:
        set_route(redis_url, instance, HOST, a.url)
        master = router.edge.pid()
        assert master is not None
        old = frozenset(wait_workers(master, 1))
        changed = dataclasses.replace(config, workers=2)
        with QuotedFlood(router.port) as flood:
            assert Edge(changed).start() == master
            assert "POST /[emerg]" in router.edge.error_tail(20000)  # the flood is logged
            wait_workers(master, 2, old)
            assert get(router.port, HOST)[0] == 200
            before = workers(master)
            (lua_copy / "gitpaas_resp.lua").write_text("return {{{ broken\n")
            with pytest.raises(ServiceError, match="nginx did not reload: .*gitpaas_resp"):
                Edge(changed).start()
            assert workers(master) == before
            # a config nginx -t accepts but the master cannot load: a port in use
            (lua_copy / "gitpaas_resp.lua").write_text((LUA_DIR / "gitpaas_resp.lua").read_text())
            with socket.socket() as taken:
                taken.bind(("127.0.0.1", 0))
                taken.listen()
                busy = dataclasses.replace(changed, https_listen=taken.getsockname())
                with pytest.raises(ServiceError, match=r"did not reload: .*\[emerg\] "
                                   rf"{master}#\d+: bind\(\) to 127.0.0.1:\d+ failed"):
                    Edge(busy).start()
            assert workers(master) == before
        assert flood.sent >= 20
        assert get(router.port, HOST)[0] == 200
