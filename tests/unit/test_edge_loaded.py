"""What decides whether adopting nginx reloads it: the digest of what it (re)loads, and
what a failed reload looks like in nginx's error log (no nginx here)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gitpaas.edge import Edge, EdgeConfig
from gitpaas.edge.config import LUA_DIR
from gitpaas.edge.nginx import ReloadLog


def make_edge(tmp_path: Path) -> Edge:
    lua = tmp_path / "lua"
    shutil.copytree(LUA_DIR, lua)
    config = EdgeConfig(directory=tmp_path / "edge", listen=("127.0.0.1", 8080),
                        redis_url="redis://127.0.0.1:6379/0", prefix="t:", lua_dir=lua)
    edge = Edge(config)
    edge.write_config()
    return edge


def test_the_digest_covers_the_config_the_lua_and_the_default_certificate(tmp_path):
    edge = make_edge(tmp_path)
    first = edge.fingerprint()
    assert edge.fingerprint() == first
    (edge.config.lua_dir / "README").write_text("not Lua\n")  # not read by nginx
    assert edge.fingerprint() == first
    for path in (edge.config.lua_dir / "gitpaas_resp.lua", edge.config.conf_path,
                 edge.config.lua_conf_path, edge.config.default_cert[0]):
        before = path.read_bytes()
        path.write_bytes(before + b"\n")
        assert edge.fingerprint() != first, path
        path.write_bytes(before)
        assert edge.fingerprint() == first
    (edge.config.lua_dir / "gitpaas_new.lua").write_text("return {}\n")  # a new module
    assert edge.fingerprint() != first


def test_the_loaded_record_is_per_master(tmp_path):
    edge = make_edge(tmp_path)
    assert edge.loaded() is None
    edge._record_loaded(4242, edge.fingerprint())
    assert edge.loaded() == (4242, edge.fingerprint())
    (edge.config.directory / "loaded").write_text("garbage\n")
    assert edge.loaded() is None  # unknown: the next adopt reloads


def test_a_failed_reload_is_read_from_what_nginx_logged_after_the_signal(tmp_path):
    edge = make_edge(tmp_path)
    log = edge.config.error_log_path
    log.write_text("2026/01/01 10:00:00 [emerg] 41#41: an old failure\n")
    watch = ReloadLog(log, 41)
    assert watch.failure() == ""
    with log.open("a") as f:
        f.write("2026/01/01 10:00:01 [notice] 41#41: signal 1 (SIGHUP) received, reconfiguring\n"
                "2026/01/01 10:00:01 [error] 41#41: init_by_lua error: error loading module"
                " 'gitpaas_resp' from file '/x/gitpaas_resp.lua':\n"
                "\t/x/gitpaas_resp.lua:2: '}' expected near '<eof>'\nstack traceback:\n"
                "\t[C]: in function 'require'\n"
                "2026/01/01 10:00:01 [error] 43#43: *9 client intended to send too large body\n")
    failure = watch.failure()
    assert failure.startswith("2026/01/01 10:00:01 [error] 41#41: init_by_lua error")
    assert failure.endswith("in function 'require'")  # the traceback, no other line
    assert "old failure" not in failure and "43#43" not in failure


def test_the_master_s_bind_failure_fails_the_reload(tmp_path):
    edge = make_edge(tmp_path)
    log = edge.config.error_log_path
    watch = ReloadLog(log, 41)
    log.write_text("2026/12/01 18:32:03 [emerg] 41#41: bind() to 127.0.0.1:59741 failed "
                   "(98: Address already in use)\n")
    assert watch.failure().startswith("2026/12/01 18:32:03 [emerg] 41#41: bind() to")


@pytest.mark.parametrize("line", [
    # a worker's line quoting a client's request line and Host
    '2026/12/01 18:31:45 [error] 42#42: *522 client intended to send too large body: '
    '99999999999 bytes, client: 127.0.0.1, server: _, request: "POST /[emerg] HTTP/1.1", '
    'host: "x"',
    '2026/12/01 18:31:45 [error] 42#42: *5 client sent invalid header, client: 127.0.0.1, '
    'server: _, request: "GET /x] 41#41: init_by_lua error HTTP/1.1", host: "[emerg] 41#41: "',
    # the master's own lines that are not a failed reload
    "2026/12/01 18:31:45 [notice] 41#41: signal 1 (SIGHUP) received, reconfiguring",
    "2026/12/01 18:31:45 [error] 41#41: *7 [emerg] 41#41: init_by_lua error",
    # another master's failure (the pid is the master signalled)
    "2026/12/01 18:31:45 [emerg] 411#411: bind() to 127.0.0.1:1 failed",
])
def test_lines_a_client_controls_never_fail_a_reload(tmp_path, line):
    edge = make_edge(tmp_path)
    log = edge.config.error_log_path
    watch = ReloadLog(log, 41)
    log.write_text(line + "\n")
    assert watch.failure() == ""


def test_the_log_is_read_as_it_grows(tmp_path):
    """A flood of lines before the master's: read on, a line split across reads joined."""
    edge = make_edge(tmp_path)
    log = edge.config.error_log_path
    log.write_text("")
    watch = ReloadLog(log, 41)
    watch.CHUNK = 1000
    flood = ('2026/12/01 18:31:45 [error] 42#42: *1 client intended to send too large body,'
             ' request: "POST /[emerg] HTTP/1.1"\n') * 50
    log.write_text(flood + "2026/12/01 18:31:46 [emerg] 41#41: bind() failed\n")
    failures = [watch.failure() for _ in range(20)]
    assert "2026/12/01 18:31:46 [emerg] 41#41: bind() failed" in failures
    assert all(f in ("", "2026/12/01 18:31:46 [emerg] 41#41: bind() failed") for f in failures)
