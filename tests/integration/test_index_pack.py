"""Issue 17: packs stored by the real ``git index-pack`` behind the scanner's guards."""

from __future__ import annotations

import hashlib
import io
import subprocess
import threading

import pytest
from dulwich.repo import Repo

from gitpaas.git import indexpack, repos
from gitpaas.git.indexpack import PackRefused, store_pack
from tests.integration import packkit as pk

COMMIT, TREE = 1, 2


def obj_sha(kind: str, data: bytes) -> str:
    return hashlib.sha1(kind.encode() + b" %d\0" % len(data) + data).hexdigest()


def entry(kind: int, data: bytes) -> bytes:
    import zlib

    return pk.obj_header(kind, len(data)) + zlib.compress(data)


@pytest.fixture
def repo(tmp_path):
    r = repos.ensure_repo(tmp_path, "app", "main", 1 << 30)
    yield r
    r.close()


def pack_files(repo: Repo) -> list[str]:
    return sorted(p.name for p in (repos.Path(repo.path) / "objects" / "pack").iterdir())


def test_a_pack_is_stored_and_an_open_repo_sees_its_objects(repo):
    data = b"hello\n"
    blob = pk.blob_sha(data).encode()
    assert blob not in repo.object_store
    name = store_pack(repo.path, io.BytesIO(pk.pack([pk.blob_entry(data)])).read,
                      max_input_bytes=1 << 20, max_object_bytes=1 << 20)
    assert len(name) == 40
    assert blob in repo.object_store and repo.object_store[blob].data == data
    assert [p for p in pack_files(repo) if p.startswith("tmp_")] == []


def test_a_thin_pack_gets_its_base_from_the_repo(repo):
    base = b"base object, stored by an earlier push\n" * 20
    store_pack(repo.path, io.BytesIO(pk.pack([pk.blob_entry(base)])).read,
               max_input_bytes=None, max_object_bytes=None)
    target = b"a new object\n"
    delta = pk.varint(len(base)) + pk.varint(len(target)) + bytes([len(target)]) + target
    thin = pk.pack([pk.ref_delta_entry(bytes.fromhex(pk.blob_sha(base)), delta)])
    store_pack(repo.path, io.BytesIO(thin).read, max_input_bytes=None, max_object_bytes=None)
    assert repo.object_store[pk.blob_sha(target).encode()].data == target


def test_strict_refuses_a_commit_whose_tree_is_missing(repo):
    commit = (b"tree " + b"1" * 40 + b"\nauthor A <a@b.c> 0 +0000\ncommitter A <a@b.c> 0 +0000"
              b"\n\nmsg\n")
    with pytest.raises(PackRefused) as err:
        store_pack(repo.path, io.BytesIO(pk.pack([entry(COMMIT, commit)])).read,
                   max_input_bytes=None, max_object_bytes=None)
    assert "1111111111" in str(err.value) or "expected" in str(err.value), str(err.value)
    assert obj_sha("commit", commit).encode() not in repo.object_store
    assert [p for p in pack_files(repo) if p.endswith(".pack") or p.startswith("tmp_")] == []


def test_strict_refuses_a_malformed_tree(repo):
    blob = bytes.fromhex(pk.blob_sha(b"x"))
    tree = b"100644 a\0" + blob + b"100644 a\0" + blob  # the same name twice
    with pytest.raises(PackRefused, match="duplicate|Entries"):
        store_pack(repo.path, io.BytesIO(pk.pack([pk.blob_entry(b"x"), entry(TREE, tree)])).read,
                   max_input_bytes=None, max_object_bytes=None)
    assert [p for p in pack_files(repo) if p.endswith(".pack")] == []


def test_a_client_gone_mid_pack_stops_index_pack_and_leaves_no_file(repo):
    data = pk.pack([pk.blob_entry(bytes(range(256)) * 4000)])
    stream = io.BytesIO(data[: len(data) // 2])
    procs_before = set(_index_packs())

    def read_some(n: int) -> bytes:
        chunk = stream.read(min(n, 4096))
        if not chunk:
            raise TimeoutError("the client went silent")
        return chunk

    with pytest.raises(TimeoutError):
        store_pack(repo.path, read_some, max_input_bytes=None, max_object_bytes=None)
    assert [p for p in pack_files(repo) if p.startswith("tmp_") or p.endswith(".pack")] == []
    assert set(_index_packs()) - procs_before == set()


def test_a_refused_object_never_reaches_index_pack(repo, monkeypatch):
    seen: list[bytes] = []
    real = subprocess.Popen

    class Spy(real):  # type: ignore[misc, valid-type]
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            stdin = self.stdin
            write = stdin.write

            def spy_write(data):
                seen.append(bytes(data))
                return write(data)

            self.stdin = type("W", (), {"write": staticmethod(spy_write),
                                        "close": stdin.close})()

    monkeypatch.setattr(indexpack.subprocess, "Popen", Spy)
    big = pk.blob_entry(b"", declared=(1 << 20) + 1, compressed=pk.zlib_bomb(1 << 20))
    data = pk.pack([pk.blob_entry(b"first\n"), big])
    with pytest.raises(PackRefused, match="exceeds the limit of 1048576 bytes"):
        store_pack(repo.path, io.BytesIO(data).read, max_input_bytes=None,
                   max_object_bytes=1 << 20)
    forwarded = b"".join(seen)
    assert data.startswith(forwarded) and len(forwarded) <= data.index(big)


def test_concurrent_stores_into_two_repos(tmp_path):
    results: list[object] = []

    def one(i: int) -> None:
        r = repos.ensure_repo(tmp_path, f"app{i}", "main", 1 << 30)
        try:
            payload = b"object %d\n" % i * 1000
            store_pack(r.path, io.BytesIO(pk.pack([pk.blob_entry(payload)])).read,
                       max_input_bytes=None, max_object_bytes=None)
            results.append(r.object_store[pk.blob_sha(payload).encode()].data == payload)
        finally:
            r.close()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == [True] * 4


def _index_packs() -> list[int]:
    out = subprocess.run(["pgrep", "-f", "git index-pack --stdin --fix-thin"],
                         capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def test_serve_receive_pack_applies_the_object_cap_it_is_given(repo):
    from gitpaas.git.receive import serve_receive_pack

    data = b"x" * 5000
    line = f"{pk.ZERO} {pk.blob_sha(data)} refs/tags/big\0report-status\n"
    wire = pk.pkt(line) + pk.FLUSH + pk.pack([pk.blob_entry(data)])
    for cap, expected in ((4096, b"unpack an object of 5000 bytes exceeds the limit of 4096"),
                          (8192, b"unpack ok")):
        sent: list[bytes] = []
        serve_receive_pack(repo, io.BytesIO(wire).read, sent.append, lambda *a: None, cap)
        assert expected in b"".join(sent), (cap, sent)


def test_old_tools_zero_padded_modes_pass_but_dotgit_does_not(repo):
    blob = bytes.fromhex(pk.blob_sha(b"x"))
    inner = b"100644 f\0" + blob
    inner_sha = bytes.fromhex(obj_sha("tree", inner))
    padded = b"040000 d\0" + inner_sha  # what some old tools wrote
    store_pack(repo.path, io.BytesIO(pk.pack([pk.blob_entry(b"x"), entry(TREE, inner),
                                              entry(TREE, padded)])).read,
               max_input_bytes=None, max_object_bytes=None)
    assert obj_sha("tree", padded).encode() in repo.object_store
    dotgit = b"40000 .git\0" + inner_sha
    with pytest.raises(PackRefused, match="hasDotgit"):
        store_pack(repo.path, io.BytesIO(pk.pack([pk.blob_entry(b"x"), entry(TREE, inner),
                                                  entry(TREE, dotgit)])).read,
                   max_input_bytes=None, max_object_bytes=None)
