"""Issue 7, point 3: bad refs, oversized pushes and crafted packs over a raw SSH channel.

Each attack gets an error, nothing is written where it should not be, and the server keeps
serving other clients with bounded memory.
"""

from __future__ import annotations

import os
import resource
import threading
import time

import paramiko
import pytest
from dulwich.repo import Repo

from gitpaas import settings as settings_mod
from gitpaas import sshkeys
from gitpaas.platform import Platform
from gitpaas.ssh.server import SSHServer
from tests.conftest import remove_networks, unique
from tests.integration import packkit as pk

pytestmark = pytest.mark.timeout(300)
MAX_PUSH = 256 * 1024


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    data = tmp_path_factory.mktemp("attacks") / "data"
    name = unique("atk")
    s = settings_mod.load({"data_dir": data, "instance": name, "max_push_bytes": MAX_PUSH,
                           "max_object_bytes": 10 << 20,
                           "redis_url": "redis://127.0.0.1:1/0"}, environ={})
    platform = Platform(s)
    key = paramiko.ECDSAKey.generate(bits=256)
    platform.store.add_key("admin", sshkeys.fingerprint(key.asbytes()),
                           f"{key.get_name()} {key.get_base64()}")
    server = SSHServer(platform, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server, key, s
    server.stop()
    remove_networks(name)  # a push that creates its app starts its network at once


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def still_serves(server, key) -> None:
    t = pk.RawSession(server.port, key, "version", timeout=10)
    out = t.chan.makefile("rb").read()
    assert t.chan.recv_exit_status() == 0 and out.startswith(b"gitpaas ")
    t.close()


def repo_files(s) -> set[str]:
    root = s.repos_dir
    return {str(p.relative_to(root)) for p in root.rglob("*")} if root.exists() else set()


def test_max_input_size_is_set_from_the_settings(srv):
    server, key, s = srv
    data = b"small\n"
    report, _, _ = pk.push_bytes(server.port, key, "cfg",
                                 [(pk.ZERO, pk.blob_sha(data), "refs/tags/t")],
                                 pk.pack([pk.blob_entry(data)]))
    repo = Repo(str(s.repos_dir / "cfg.git"))
    assert repo.get_config().get((b"receive",), b"maxInputSize") == str(MAX_PUSH).encode()
    repo.close()


def test_a_push_over_the_size_limit_is_refused(srv):
    server, key, s = srv
    data = os.urandom(MAX_PUSH + 4096)  # random: deflate cannot shrink it under the cap
    start = time.monotonic()
    report, _, _ = pk.push_bytes(server.port, key, "big",
                                 [(pk.ZERO, pk.blob_sha(data), "refs/heads/feature")],
                                 pk.pack([pk.blob_entry(data)]))
    assert report and report[0].startswith(b"unpack ") and report[0] != b"unpack ok\n", report
    assert b"exceeds maximum input size of 262144 bytes" in report[0]
    assert time.monotonic() - start < 30
    repo = Repo(str(s.repos_dir / "big.git"))
    assert b"refs/heads/feature" not in repo.get_refs()
    repo.close()
    still_serves(server, key)


@pytest.mark.parametrize("ref", [
    "refs/heads/../../config", "refs/heads/a/../../../x", "HEAD", "config", "refs/notes/x",
    "refs/heads/a..b", "refs/heads/x.lock", "refs/heads/\x01", "refs/heads/a b",
    "../../../../tmp/pwned", "refs/remotes/origin/main",
])
def test_refs_outside_heads_and_tags_are_refused_before_any_file_access(srv, ref):
    server, key, s = srv
    app = "refs"
    before = repo_files(s)
    data = b"payload\n"
    report, _, _ = pk.push_bytes(server.port, key, app,
                                 [(pk.ZERO, pk.blob_sha(data), ref)],
                                 pk.pack([pk.blob_entry(data)]))
    if " " in ref:  # not even a ref update line: a protocol error, the session ends
        assert report == []
    else:
        assert report[:1] == [b"unpack refused: bad ref name\n"], report
        assert report[1].startswith(b"ng "), report
    after = repo_files(s)
    created = {p for p in after - before if not p.startswith(f"{app}.git")}
    assert created == set()
    pack_files = {p for p in after - before if "/objects/pack/" in p}
    assert pack_files == set()  # the pack was never read, let alone stored
    assert not (s.data_dir.parent / "tmp").exists()
    still_serves(server, key)


def huge_delta_pack() -> bytes:
    base = b"base object\n"
    first = pk.blob_entry(base)
    # a delta claiming a 2**62-byte result, copying 64 KiB again and again from the base
    delta = pk.varint(len(base)) + pk.varint(1 << 62) + b"\x90\x00" * 5000
    return pk.pack([first, pk.ofs_delta_entry(len(first), delta)])


def self_delta_pack() -> bytes:
    delta = pk.varint(10) + pk.varint(10) + b"\x0a" + b"x" * 10
    return pk.pack([pk.ofs_delta_entry(0, delta)])


def delta_cycle_pack() -> bytes:
    a, b = bytes.fromhex("11" * 20), bytes.fromhex("22" * 20)
    delta = pk.varint(3) + pk.varint(3) + b"\x03abc"
    return pk.pack([pk.ref_delta_entry(b, delta), pk.ref_delta_entry(a, delta)])


def zlib_bomb_small_declared() -> bytes:
    return pk.pack([pk.blob_entry(b"", declared=16, compressed=pk.zlib_bomb(200 << 20))])


def zlib_bomb_big_declared() -> bytes:
    return pk.pack([pk.blob_entry(b"", declared=200 << 20, compressed=pk.zlib_bomb(200 << 20))])


def delta_amplifier_pack() -> bytes:
    """A 64 KiB base (a few bytes deflated) copied 5,000 times by one small delta: 320 MB."""
    base = b"\0" * 0x10000
    first = pk.blob_entry(base)
    copies = 5000
    delta = pk.varint(len(base)) + pk.varint(copies * len(base)) + b"\x80" * copies
    return pk.pack([first, pk.ofs_delta_entry(len(first), delta)])


CRAFTED = {
    "huge declared delta": huge_delta_pack,
    "self-referential delta": self_delta_pack,
    "ref-delta cycle": delta_cycle_pack,
    "zlib bomb, small declared size": zlib_bomb_small_declared,
    "zlib bomb, huge declared size": zlib_bomb_big_declared,
    "delta amplifier": delta_amplifier_pack,
    "bad checksum": lambda: pk.pack([pk.blob_entry(b"x")])[:-1] + b"\0",
    "object count lies": lambda: pk.pack([pk.blob_entry(b"x")], count=1 << 31),
    "not a pack": lambda: b"NOPE" + b"\0" * 100,
    "truncated pack": lambda: pk.pack([pk.blob_entry(os.urandom(5000))])[:2000],
}


@pytest.mark.parametrize("name", list(CRAFTED))
def test_crafted_packs_get_an_error_with_bounded_memory(srv, name):
    server, key, _ = srv
    before = rss_mib()
    start = time.monotonic()
    report, status, err = pk.push_bytes(
        server.port, key, "crafted", [(pk.ZERO, "1" * 40, "refs/heads/feature")],
        CRAFTED[name](), close_early=True, timeout=60)
    elapsed = time.monotonic() - start
    ok = report[:1] == [b"unpack ok\n"] and any(r.startswith(b"ok ") for r in report)
    assert not ok, (name, report)
    assert elapsed < 60, name
    grown = rss_mib() - before
    assert grown < 100, f"{name}: peak RSS grew {grown:.0f} MiB"
    still_serves(server, key)


@pytest.mark.parametrize("payload", [
    b"00",  # a short length prefix, then the client hangs up
    b"zzzz",  # not hex
    b"0003",  # length below 4
    b"00ffshort",  # declares 255 bytes, sends 5
    b"0032" + b"1" * 10,  # a ref line cut short
    pk.pkt(f"{pk.ZERO} {'1' * 40}\n"),  # two fields instead of three
    pk.pkt(f"{'z' * 40} {'1' * 40} refs/heads/main\n") + pk.FLUSH,  # not hex
])
def test_truncated_or_malformed_pkt_lines(srv, payload):
    server, key, _ = srv
    s = pk.RawSession(server.port, key, "git-receive-pack 'trunc.git'", timeout=30)
    try:
        s.read_pkts()
        s.send(payload)
        s.chan.shutdown_write()
        start = time.monotonic()
        status, _ = s.finish()
        assert time.monotonic() - start < 30
        assert status != 0 or s.chan.closed or status == -1
    finally:
        s.close()
    still_serves(server, key)


def test_a_valid_raw_push_still_works(srv):
    server, key, s = srv
    data = b"hello\n"
    report, status, _ = pk.push_bytes(server.port, key, "good",
                                      [(pk.ZERO, pk.blob_sha(data), "refs/tags/v1")],
                                      pk.pack([pk.blob_entry(data)]))
    assert report == [b"unpack ok\n", b"ok refs/tags/v1\n"] and status == 0


def test_a_ref_to_a_missing_object_is_refused(srv):
    server, key, s = srv
    data = b"there\n"
    report, _, _ = pk.push_bytes(server.port, key, "good",
                                 [(pk.ZERO, "1" * 40, "refs/tags/ghost")],
                                 pk.pack([pk.blob_entry(data)]))
    assert report[0] == b"unpack ok\n"
    assert report[1].startswith(b"ng refs/tags/ghost refused: the pushed object"), report
