"""The server's host key: created on first start, atomically, mode 0600, then kept."""

from __future__ import annotations

import io
from pathlib import Path

import paramiko

from ..secrets import write_private_file


def load_host_key(path: Path) -> paramiko.PKey:
    """Load the ECDSA host key at ``path``, generating it on first use."""
    if not path.exists():
        key = paramiko.ECDSAKey.generate(bits=256)
        buf = io.StringIO()
        key.write_private_key(buf)
        write_private_file(path, buf.getvalue().encode())
    return paramiko.ECDSAKey.from_private_key_file(str(path))
