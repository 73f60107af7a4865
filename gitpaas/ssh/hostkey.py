"""The server's host keys: created on first start, atomically, mode 0600, then kept.

Ed25519 first, RSA 3072 (signed with rsa-sha2-512/256 only) second, both made with
``cryptography`` in OpenSSH's own format (``ssh-keygen -lf`` reads them). An ECDSA
nistp256 key, the only host key of earlier versions, is still offered, last, when its file
exists, so that clients which pinned it keep connecting; it is never created, and deleting
the file retires it (docs/security.md).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from ..secrets import write_private_file

ED25519_FILE = "ssh_host_ed25519_key"
RSA_FILE = "ssh_host_rsa_key"
LEGACY_ECDSA_FILE = "ssh_host_ecdsa_key"
RSA_BITS = 3072


def _openssh_pem(key: ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                             serialization.NoEncryption())


def _new_ed25519() -> bytes:
    return _openssh_pem(ed25519.Ed25519PrivateKey.generate())


def _new_rsa() -> bytes:
    return _openssh_pem(rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS))


def _load(path: Path, kind: type[paramiko.PKey], make: Callable[[], bytes]) -> paramiko.PKey:
    if not path.exists():
        write_private_file(path, make())
    return kind.from_private_key(io.StringIO(path.read_text()))


def load_host_keys(data_dir: Path) -> list[paramiko.PKey]:
    """The host keys in order of preference, generating the missing Ed25519 and RSA keys."""
    keys = [_load(data_dir / ED25519_FILE, paramiko.Ed25519Key, _new_ed25519),
            _load(data_dir / RSA_FILE, paramiko.RSAKey, _new_rsa)]
    legacy = data_dir / LEGACY_ECDSA_FILE
    if legacy.exists():
        keys.append(paramiko.ECDSAKey.from_private_key(io.StringIO(legacy.read_text())))
    return keys
