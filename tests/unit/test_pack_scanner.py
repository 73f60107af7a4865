"""Issue 17: the scanner in front of ``git index-pack`` (git/indexpack.py).

It must find where a pack ends (read nothing after it), forward the pack byte for byte,
and refuse oversized and bomb objects before their header is forwarded."""

from __future__ import annotations

import io
import os
import zlib

import pytest

from gitpaas.git.indexpack import PackInput, PackRefused, PackScanner
from tests.integration import packkit as pk
from tests.integration.test_receive_attacks import CRAFTED

CAP = 10 << 20


class Wire:
    """A client's bytes, handed out in small pieces; counts what was read."""

    def __init__(self, data: bytes, piece: int = 7) -> None:
        self.stream = io.BytesIO(data)
        self.piece = piece

    def __call__(self, n: int) -> bytes:
        return self.stream.read(min(n, self.piece))

    @property
    def read(self) -> int:
        return self.stream.tell()


def scan(data: bytes, piece: int = 7, max_object: int | None = CAP,
         max_input: int | None = 1 << 30) -> tuple[bytes, Wire, PackScanner]:
    sent: list[bytes] = []
    wire = Wire(data, piece)
    scanner = PackScanner(PackInput(wire, sent.append, max_input), max_object, max_input)
    try:
        scanner.scan()
    finally:
        scanner.forwarded = b"".join(sent)  # type: ignore[attr-defined]
    return scanner.forwarded, wire, scanner  # type: ignore[attr-defined]


def mixed_pack() -> bytes:
    base = os.urandom(3000) + b"a" * 5000
    first = pk.blob_entry(base)
    delta = pk.varint(len(base)) + pk.varint(12) + b"\x0c" + b"hello world\n"
    second = pk.ofs_delta_entry(len(first), delta)
    third = pk.ref_delta_entry(bytes.fromhex(pk.blob_sha(base)), delta)
    return pk.pack([first, second, third, pk.blob_entry(b""), pk.blob_entry(os.urandom(70000))])


@pytest.mark.parametrize("piece", [1, 7, 4096, 1 << 20])
def test_a_pack_is_forwarded_byte_for_byte_and_nothing_after_it(piece):
    data = mixed_pack()
    forwarded, wire, scanner = scan(data + b"0000 after the pack", piece)
    assert forwarded == data
    assert scanner.objects == 5
    # it stops reading at the pack's end: at most the rest of the last piece is read
    assert len(data) <= wire.read < len(data) + piece


def test_a_real_git_pack_is_walked_to_its_end(tmp_path):
    import subprocess

    repo = tmp_path / "r"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    for i in range(5):
        (repo / f"f{i}.txt").write_text("line\n" * (100 * i + 1))
        subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True)
        subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t",
                        "commit", "-qm", f"c{i}"], check=True)
    data = subprocess.run(["git", "-C", str(repo), "pack-objects", "--stdout", "--revs"],
                          input=b"HEAD\n", capture_output=True, check=True).stdout
    forwarded, _, scanner = scan(data, 4096)
    assert forwarded == data and scanner.objects == 5 * 3


def test_an_object_over_the_cap_is_refused_before_its_header_is_forwarded():
    small = pk.blob_entry(b"ok\n")
    big = pk.blob_entry(b"", declared=CAP + 1, compressed=zlib.compress(b"\0" * 16))
    with pytest.raises(PackRefused, match=f"an object of {CAP + 1} bytes exceeds the limit"):
        scan(pk.pack([small, big]))


def test_a_delta_result_over_the_cap_is_refused():
    base = b"\0" * 0x10000
    first = pk.blob_entry(base)
    copies = 5000
    delta = pk.varint(len(base)) + pk.varint(copies * len(base)) + b"\x80" * copies
    with pytest.raises(PackRefused, match="a delta result of 327680000 bytes exceeds"):
        scan(pk.pack([first, pk.ofs_delta_entry(len(first), delta)]), 4096)


def test_a_zlib_bomb_stops_inflating_at_its_declared_size():
    bomb = pk.blob_entry(b"", declared=16, compressed=pk.zlib_bomb(200 << 20))
    with pytest.raises(PackRefused, match="inflates to more than the 16 bytes"):
        scan(pk.pack([bomb]), 65536)


def test_the_input_cap_counts_bytes_on_the_wire():
    data = pk.pack([pk.blob_entry(os.urandom(5000))])
    with pytest.raises(PackRefused, match="pack exceeds maximum input size of 4096 bytes"):
        scan(data, 1024, max_input=4096)


def test_a_lying_object_count_is_refused_at_once():
    data = pk.pack([pk.blob_entry(b"x")], count=1 << 31)
    forwarded = []
    wire = Wire(data)
    with pytest.raises(PackRefused, match="maximum input size"):
        PackScanner(PackInput(wire, forwarded.append, 1 << 20), CAP, 1 << 20).scan()
    assert forwarded == []


@pytest.mark.parametrize("name", ["huge declared delta", "self-referential delta",
                                  "zlib bomb, small declared size",
                                  "zlib bomb, huge declared size", "delta amplifier",
                                  "object count lies", "not a pack", "truncated pack"])
def test_crafted_packs_are_refused_by_the_scanner(name):
    with pytest.raises(PackRefused):
        scan(CRAFTED[name](), 65536)


def test_a_truncated_pack_is_an_early_eof():
    with pytest.raises(PackRefused, match="early EOF"):
        scan(mixed_pack()[:-30])


def test_without_a_cap_objects_of_any_declared_size_pass():
    data = pk.pack([pk.blob_entry(b"z" * 100000)])
    assert scan(data, 65536, max_object=None)[0] == data
