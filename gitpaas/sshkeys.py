"""OpenSSH public key lines: parsing and SHA256 fingerprints (no crypto library needed)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from dataclasses import dataclass

from .errors import InvalidInput

KEY_TYPES = frozenset({
    "ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521", "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com",
})


@dataclass(frozen=True)
class PublicKey:
    kind: str
    blob: bytes
    comment: str

    @property
    def line(self) -> str:
        """The key as one ``type base64`` line (the comment is not kept)."""
        return f"{self.kind} {base64.b64encode(self.blob).decode()}"

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.blob)


def fingerprint(blob: bytes) -> str:
    """OpenSSH's ``SHA256:...`` fingerprint of a key blob."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def parse(text: str) -> PublicKey:
    """Parse one OpenSSH public key line; raise ``InvalidInput`` with a one-line reason."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    if len(lines) != 1:
        raise InvalidInput("expected exactly one public key line (e.g. ~/.ssh/id_ed25519.pub)")
    parts = lines[0].split(None, 2)
    if len(parts) < 2 or parts[0] not in KEY_TYPES:
        raise InvalidInput("not an OpenSSH public key line ('ssh-ed25519 AAAA... comment')")
    try:
        blob = base64.b64decode(parts[1], validate=True)
        (length,) = struct.unpack(">I", blob[:4])
        embedded = blob[4:4 + length].decode("ascii")
    except (binascii.Error, struct.error, UnicodeDecodeError) as exc:
        raise InvalidInput("the public key's base64 data is damaged") from exc
    if embedded != parts[0]:
        raise InvalidInput("the public key's type does not match its data")
    return PublicKey(parts[0], blob, parts[2] if len(parts) > 2 else "")
