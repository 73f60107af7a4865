"""Raw git wire bytes for attack tests: pkt-lines, packs, deltas, and a paramiko client."""

from __future__ import annotations

import hashlib
import struct
import zlib

import paramiko

ZERO = "0" * 40
BLOB, OFS_DELTA, REF_DELTA = 3, 6, 7


def pkt(data: bytes | str) -> bytes:
    raw = data.encode() if isinstance(data, str) else data
    return b"%04x" % (len(raw) + 4) + raw


FLUSH = b"0000"


def varint(n: int) -> bytes:
    """The size varint of delta headers (7 bits a byte, little end first)."""
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def obj_header(kind: int, size: int) -> bytes:
    out = bytearray([(kind << 4) | (size & 0x0F)])
    size >>= 4
    while size:
        out[-1] |= 0x80
        out.append(size & 0x7F)
        size >>= 7
    return bytes(out)


def ofs(offset: int) -> bytes:
    out = [offset & 0x7F]
    offset >>= 7
    while offset:
        offset -= 1
        out.insert(0, 0x80 | (offset & 0x7F))
        offset >>= 7
    return bytes(out)


def blob_entry(data: bytes, declared: int | None = None, compressed: bytes | None = None) -> bytes:
    size = len(data) if declared is None else declared
    return obj_header(BLOB, size) + (compressed if compressed is not None else
                                     zlib.compress(data))


def ofs_delta_entry(back: int, delta: bytes) -> bytes:
    return obj_header(OFS_DELTA, len(delta)) + ofs(back) + zlib.compress(delta)


def ref_delta_entry(base: bytes, delta: bytes) -> bytes:
    return obj_header(REF_DELTA, len(delta)) + base + zlib.compress(delta)


def pack(entries: list[bytes], count: int | None = None) -> bytes:
    body = b"PACK" + struct.pack(">II", 2, len(entries) if count is None else count)
    body += b"".join(entries)
    return body + hashlib.sha1(body).digest()


def blob_sha(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def zlib_bomb(size: int) -> bytes:
    """``size`` zero bytes, deflated (about 1/1000 of ``size``)."""
    comp = zlib.compressobj(9)
    chunk = b"\0" * (1 << 20)
    out = [comp.compress(chunk) for _ in range(size >> 20)]
    return b"".join(out) + comp.flush()


class RawSession:
    """One exec over a raw paramiko transport, reading and writing bytes."""

    def __init__(self, port: int, key: paramiko.PKey, command: str, timeout: float = 30):
        self.transport = paramiko.Transport(("127.0.0.1", port))
        self.transport.start_client(timeout=10)
        self.transport.auth_publickey("git", key)
        self.chan = self.transport.open_session(timeout=10)
        self.chan.settimeout(timeout)
        self.chan.exec_command(command)
        self._buf = b""

    def _read(self, n: int) -> bytes:
        while len(self._buf) < n:
            data = self.chan.recv(65536)
            if not data:
                raise EOFError("channel closed")
            self._buf += data
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def read_pkts(self) -> list[bytes]:
        """pkt-lines up to a flush (or the channel's end)."""
        lines = []
        try:
            while True:
                size = int(self._read(4), 16)
                if size == 0:
                    return lines
                lines.append(self._read(size - 4))
        except (TimeoutError, EOFError):
            return lines

    def send(self, data: bytes) -> None:
        self.chan.sendall(data)

    def finish(self) -> tuple[int, str]:
        """(exit status, stderr) once the server has closed the channel."""
        err = b""
        try:
            while True:
                chunk = self.chan.recv_stderr(65536)
                if not chunk:
                    break
                err += chunk
        except TimeoutError:
            pass
        status = self.chan.recv_exit_status() if self.chan.exit_status_ready() else -1
        return status, err.decode("utf-8", "replace")

    def close(self) -> None:
        self.transport.close()


def push_bytes(port: int, key: paramiko.PKey, app: str, updates: list[tuple[str, str, str]],
               pack_data: bytes, caps: str = "report-status", close_early: bool = False,
               timeout: float = 30) -> tuple[list[bytes], int, str]:
    """Send ref updates and ``pack_data``; return (report lines, exit status, stderr)."""
    s = RawSession(port, key, f"git-receive-pack '{app}.git'", timeout)
    try:
        s.read_pkts()  # the advertisement
        first = True
        for old, new, ref in updates:
            line = f"{old} {new} {ref}" + (f"\0{caps}" if first else "") + "\n"
            s.send(pkt(line))
            first = False
        try:
            s.send(FLUSH)
            s.send(pack_data)
            if close_early:
                s.chan.shutdown_write()
        except OSError:  # the server refused and closed before reading it all
            pass
        report = s.read_pkts()
        status, err = s.finish()
        return report, status, err
    finally:
        s.close()
