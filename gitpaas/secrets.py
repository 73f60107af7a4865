"""Config values are encrypted at rest with a key kept in the data dir (mode 0600)."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from .errors import ServiceError


def write_private_file(path: Path, data: bytes) -> None:
    """Create ``path`` atomically with mode 0600 unless it exists already."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # fails if another process made it first: keep theirs
    except FileExistsError:
        pass
    finally:
        tmp.unlink()


class Cipher:
    """Encrypts and decrypts values with a Fernet key."""

    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    @classmethod
    def from_file(cls, path: Path) -> Cipher:
        """Load the key at ``path``, creating it (0600) on first use."""
        if not path.exists():
            write_private_file(path, Fernet.generate_key())
        return cls(path.read_bytes().strip())

    def encrypt(self, value: bytes) -> bytes:
        return self._fernet.encrypt(value)

    def decrypt(self, token: bytes) -> bytes:
        try:
            return self._fernet.decrypt(bytes(token))
        except InvalidToken as exc:
            raise ServiceError("cannot decrypt stored config: wrong secret key?") from exc
