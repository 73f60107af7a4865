"""What decides whether adopting nginx reloads it: the digest of what it (re)loads, and
what a failed reload looks like in nginx's error log (no nginx here)."""

from __future__ import annotations

import shutil
from pathlib import Path

from gitpaas.edge import Edge, EdgeConfig
from gitpaas.edge.config import LUA_DIR


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
    log.write_text("2026/01/01 [emerg] 1#1: an old failure\n")
    offset = log.stat().st_size
    assert edge._reload_error(offset) == ""
    with log.open("a") as f:
        f.write("2026/01/01 [notice] 1#1: signal 1 (SIGHUP) received, reconfiguring\n"
                "2026/01/01 [error] 1#1: init_by_lua error: gitpaas_edge.lua:3: boom\n")
    assert edge._reload_error(offset).startswith("2026/01/01 [error] 1#1: init_by_lua error")
    assert "old failure" not in edge._reload_error(offset)
