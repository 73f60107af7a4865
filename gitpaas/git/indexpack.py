"""Storing an incoming pack with ``git index-pack``, behind the receive path's guards.

dulwich reads, indexes and re-reads every object of a pack in Python (about 3 s for a
61 MB pack); ``git index-pack`` does the same in C in a fraction of that. dulwich keeps
the protocol (advertisement, commands, report-status); the pack bytes go through
``PackScanner`` on their way to ``git index-pack --stdin --fix-thin --strict``:

- the scanner walks the pack's object headers and inflates each object (without keeping
  it) to find where it ends, so the session reads exactly the pack and nothing after it;
- ``max_input_bytes`` (``receive.maxInputSize``): counted on the wire, as dulwich did;
- ``max_object_bytes``: an object whose declared size, or a delta whose declared result,
  is larger is refused. An entry's header is held back until it is checked, so
  ``index-pack`` never allocates for a refused object; the pack's trailer is sent only
  once every object has passed, and ``index-pack`` applies no delta before the trailer;
- zlib bombs: inflating stops as soon as an object yields more than it declared;
- ``--strict``: every object is checked as ``git fsck`` would (trees, commits, tags, and
  that the objects they name are in the pack or the repo); only ``LENIENT_FSCK``'s
  cosmetic findings are let through.

Whatever ends the session early, ``index-pack`` is killed and waited for; its temporary
files (``objects/pack/tmp_*``) are removed here. No shell: an argument list.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

CHUNK = 1 << 16
OFS_DELTA, REF_DELTA = 6, 7
VALID_TYPES = (1, 2, 3, 4, OFS_DELTA, REF_DELTA)
# The smallest pack entry: a one-byte header and an empty zlib stream (8 bytes).
MIN_ENTRY = 9
# Output asked of zlib per call: bounds the memory of inflating a large object.
INFLATE_STEP = 1 << 20
# After the last byte arrived, index-pack resolves deltas and writes the index.
INDEX_TIMEOUT = 600.0


class PackRefused(Exception):
    """The pack is refused; ``str(exc)`` is the one-line reason sent to the client."""


class PackInput:
    """Reads pack bytes from the client and forwards those already checked to ``sink``.

    Offsets are from the start of the pack. ``hold`` (an offset or None) keeps back the
    bytes from an entry's start until its header has passed the checks."""

    def __init__(self, read_some: Callable[[int], bytes], sink: Callable[[bytes], object],
                 max_input_bytes: int | None) -> None:
        self._read_some = read_some
        self._sink = sink
        self.read_time = self.write_time = 0.0  # waiting for the client / for index-pack
        self._max = max_input_bytes
        self.buf = b""
        self.base = 0  # offset of buf[0]
        self.pos = 0  # parse position (offset)
        self.hold: int | None = None
        self.received = 0

    def fill(self) -> None:
        """Forward what may be forwarded, then read more bytes (EOF is an error)."""
        self.flush()
        started = time.monotonic()
        data = self._read_some(CHUNK)
        self.read_time += time.monotonic() - started
        if not data:
            raise PackRefused("early EOF: the pack ended before its last object")
        self.received += len(data)
        if self._max and self.received > self._max:
            raise PackRefused(f"pack exceeds maximum input size of {self._max} bytes")
        keep = self.buf[self.base_index(self.flushed_to):]
        self.base = self.flushed_to
        self.buf = keep + data if keep else data

    @property
    def flushed_to(self) -> int:
        return self.pos if self.hold is None else min(self.hold, self.pos)

    def base_index(self, offset: int) -> int:
        return offset - self.base

    def flush(self) -> None:
        """Send the bytes before ``flushed_to`` that were not sent yet."""
        end = self.base_index(self.flushed_to)
        if end > 0:
            started = time.monotonic()
            self._sink(self.buf[:end])
            self.write_time += time.monotonic() - started
            self.buf = self.buf[end:]
            self.base += end

    def available(self) -> int:
        return self.base + len(self.buf) - self.pos

    def take(self, n: int) -> bytes:
        """The next ``n`` bytes (reading more as needed)."""
        while self.available() < n:
            self.fill()
        start = self.base_index(self.pos)
        self.pos += n
        return self.buf[start:start + n]

    def byte(self) -> int:
        return self.take(1)[0]


class PackScanner:
    """Walks a pack stream object by object, applying the size guards (see the module)."""

    def __init__(self, inp: PackInput, max_object_bytes: int | None,
                 max_input_bytes: int | None, hash_size: int = 20) -> None:
        self.inp = inp
        self.max_object = max_object_bytes if max_object_bytes and max_object_bytes > 0 \
            else None
        self.max_input = max_input_bytes
        self.hash_size = hash_size
        self.objects = 0

    def scan(self) -> None:
        """Read the whole pack (header, objects, trailer), forwarding it as it passes."""
        inp = self.inp
        head = inp.take(12)
        if head[:4] != b"PACK":
            raise PackRefused("not a git pack (bad signature)")
        version = int.from_bytes(head[4:8], "big")
        if version not in (2, 3):
            raise PackRefused(f"unsupported pack version {version}")
        count = int.from_bytes(head[8:12], "big")
        if self.max_input and count * MIN_ENTRY + 12 + self.hash_size > self.max_input:
            raise PackRefused(f"pack exceeds maximum input size of {self.max_input} bytes"
                              f" (it declares {count} objects)")
        for _ in range(count):
            self._entry()
            self.objects += 1
        inp.take(self.hash_size)
        inp.flush()

    def _entry(self) -> None:
        inp = self.inp
        start = inp.pos
        inp.hold = start
        byte = inp.byte()
        kind = (byte >> 4) & 7
        size = byte & 0x0F
        shift = 4
        while byte & 0x80:
            if shift > 63:
                raise PackRefused(f"bad object header at offset {start}")
            byte = inp.byte()
            size |= (byte & 0x7F) << shift
            shift += 7
        if kind not in VALID_TYPES:
            raise PackRefused(f"bad object type {kind} at offset {start}")
        self._check_size(size, "an object")
        if kind == OFS_DELTA:
            back = self._ofs()
            if back <= 0 or back > start:
                raise PackRefused(f"delta base offset out of bounds at offset {start}")
        elif kind == REF_DELTA:
            inp.take(self.hash_size)
        inp.hold = None  # the header passed: index-pack may allocate ``size``
        head = self._inflate(size, start)
        if kind in (OFS_DELTA, REF_DELTA):
            self._check_size(_delta_result_size(head, start), "a delta result")

    def _ofs(self) -> int:
        byte = self.inp.byte()
        value = byte & 0x7F
        for _ in range(10):
            if not byte & 0x80:
                return value
            byte = self.inp.byte()
            value = ((value + 1) << 7) | (byte & 0x7F)
        raise PackRefused("bad delta base offset")

    def _check_size(self, size: int, what: str) -> None:
        if self.max_object is not None and size > self.max_object:
            raise PackRefused(f"{what} of {size} bytes exceeds the limit of"
                              f" {self.max_object} bytes")

    def _inflate(self, size: int, start: int) -> bytes:
        """Inflate the entry's zlib stream (declared to yield ``size`` bytes), keeping
        only its first 32 bytes; the parse position ends right after the stream."""
        inp = self.inp
        z = zlib.decompressobj()
        produced = 0
        head = b""
        # Deflate adds at most ~5 bytes per 16 KB (stored blocks): ask for a slice that
        # usually holds the whole stream, so what follows is not copied per object.
        want = size + (size >> 10) + 64
        pending = False  # zlib stopped at the output limit: it may hold more output
        while True:
            if not pending and inp.available() == 0:
                inp.fill()
            index = inp.base_index(inp.pos)
            piece = memoryview(inp.buf)[index:index + min(want, len(inp.buf) - index)]
            limit = min(size - produced + 1, INFLATE_STEP)
            try:
                out = z.decompress(piece, limit)
            except zlib.error as exc:
                raise PackRefused(f"bad object at offset {start}: {exc}") from exc
            inp.pos += len(piece) - len(z.unconsumed_tail) - len(z.unused_data)
            produced += len(out)
            pending = len(out) == limit
            if len(head) < 32:
                head += out[:32 - len(head)]
            if produced > size:
                raise PackRefused(f"bad object at offset {start}: it inflates to more than"
                                  f" the {size} bytes it declares")
            if z.eof:
                if produced != size:
                    raise PackRefused(f"bad object at offset {start}: {produced} bytes"
                                      f" inflated, {size} declared")
                return head


def _delta_result_size(head: bytes, offset: int) -> int:
    """The target size a git delta declares (its second varint)."""
    index = 0
    sizes = []
    for _ in range(2):
        size = shift = 0
        while True:
            if index >= len(head) or shift > 63:
                raise PackRefused(f"bad delta header at offset {offset}")
            byte = head[index]
            index += 1
            size |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        sizes.append(size)
    return sizes[1]


def git_binary() -> str:
    git = shutil.which("git")
    if git is None:
        raise PackRefused("git is not installed on the server (install the git package)")
    return git


# fsck's findings that ``--strict`` would make fatal but that only say an old tool wrote
# the object (git itself reads them fine): refusing them would lock old histories out.
# Everything else fsck reports stays fatal (.git, .., duplicate names, bad commits...).
LENIENT_FSCK = ("zeroPaddedFilemode", "badFilemode")


def index_pack_argv(git: str, max_input_bytes: int | None) -> list[str]:
    strict = ",".join(f"{msg}=ignore" for msg in LENIENT_FSCK)
    argv = [git, "index-pack", "--stdin", "--fix-thin", f"--strict={strict}"]
    if max_input_bytes:
        argv.append(f"--max-input-size={max_input_bytes}")
    return argv


def _env(repo_path: str) -> dict[str, str]:
    """A clean environment: no GIT_* variable of the server leaks in; C messages."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "LANG": "C",
           "GIT_DIR": repo_path, "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0"}
    if "HOME" in os.environ:
        env["HOME"] = os.environ["HOME"]
    return env


def store_pack(repo_path: str, read_some: Callable[[int], bytes], *,
               max_input_bytes: int | None, max_object_bytes: int | None) -> str:
    """Read one pack from ``read_some`` into the bare repo at ``repo_path``.

    Returns the new pack's name; raises ``PackRefused`` (nothing stored) when a guard or
    ``git index-pack`` refuses it. Exceptions of ``read_some`` (a timeout, a hang-up)
    propagate, after index-pack is stopped and its files removed."""
    started = time.monotonic()
    argv = index_pack_argv(git_binary(), max_input_bytes)
    with tempfile.TemporaryFile() as err, tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=out, stderr=err,
                                cwd=repo_path, env=_env(repo_path), close_fds=True)
        assert proc.stdin is not None
        stdin = proc.stdin
        finished = False
        try:
            def sink(data: bytes) -> None:
                try:
                    stdin.write(data)
                except BrokenPipeError:
                    raise PackRefused(_failure(proc, err)) from None

            inp = PackInput(read_some, sink, max_input_bytes)
            scanner = PackScanner(inp, max_object_bytes, max_input_bytes)
            scanner.scan()
            try:
                stdin.close()
            except BrokenPipeError:
                raise PackRefused(_failure(proc, err)) from None
            last_byte = time.monotonic()
            try:
                code = proc.wait(INDEX_TIMEOUT)
            except subprocess.TimeoutExpired:
                raise PackRefused(f"indexing the pack took more than {INDEX_TIMEOUT:.0f} s")\
                    from None
            if code != 0:
                raise PackRefused(_failure(proc, err))
            out.seek(0)
            name = out.read().decode("ascii", "replace").split()
            finished = True
            log.info("pack stored in %s: %d objects, %d bytes, %.3f s: waiting for the"
                     " client %.3f s, for index-pack %.3f s, after the last byte %.3f s",
                     os.path.basename(repo_path.rstrip("/")), scanner.objects, inp.received,
                     time.monotonic() - started, inp.read_time, inp.write_time,
                     time.monotonic() - last_byte)
            return name[-1] if name else ""
        finally:
            if not finished:
                _stop(proc)
                remove_temporary(repo_path)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    try:
        if proc.stdin is not None:
            proc.stdin.close()
    except OSError:
        pass
    proc.wait()


def _failure(proc: subprocess.Popen[bytes], err: IO[bytes]) -> str:
    """index-pack's reason, in one line (its last ``fatal:`` line)."""
    _stop(proc)
    err.seek(0)
    lines = [line.strip() for line in err.read().decode("utf-8", "replace").splitlines()
             if line.strip()]
    fatal = [line.removeprefix("fatal:") for line in lines if line.startswith("fatal:")]
    errors = [line.removeprefix("error:") for line in lines if line.startswith("error:")]
    reason = (fatal or lines or [f"git index-pack failed ({proc.returncode})"])[-1]
    if fatal and errors:  # "fsck error in packed object" says more with its error line
        reason = f"{reason.strip()}: {errors[-1].strip()}"
    return " ".join(reason.split())[:300]


def remove_temporary(repo_path: str | os.PathLike[str]) -> list[str]:
    """Remove index-pack's temporary files (hold the app's lock: none is in use)."""
    pack_dir = Path(repo_path) / "objects" / "pack"
    removed = []
    for path in list(pack_dir.glob("tmp_pack_*")) + list(pack_dir.glob("tmp_idx_*")) \
            + list(pack_dir.glob("tmp_rev_*")):
        try:
            path.unlink()
            removed.append(path.name)
        except FileNotFoundError:
            pass
    return removed
