"""The algorithms the SSH server offers: an allow-list, in order of preference.

Modelled on ssh-audit's hardening guides for OpenSSH: no CBC, 3DES, MD5 or SHA-1 MACs,
no NIST-curve or SHA-1 key exchange, no finite-field DH at all, encrypt-then-MAC only.
Finite-field DH is left out for its cost to the server: paramiko does the 4096-bit
modular exponentiations of ``diffie-hellman-group16-sha512`` in Python, 65 ms of CPU per
key exchange (holding the interpreter lock) against 1 ms for ``curve25519`` or
``mlkem768x25519``, so an anonymous client choosing it made the server do 65 times the
work it did itself (DHEat, CVE-2002-20001). Every OpenSSH since 6.5 (2014) has curve25519.
Each list is cut to what the installed paramiko implements, so an older paramiko offers
less, never something else; an algorithm a newer paramiko adds is not offered until it
is named here (docs/security.md lists what ssh-audit says).
"""

from __future__ import annotations

from typing import Any

import paramiko

KEX = (
    "mlkem768x25519-sha256",  # post-quantum hybrid (ML-KEM-768 + X25519)
    "sntrup761x25519-sha512",  # the other hybrid, if paramiko ever ships it
    "sntrup761x25519-sha512@openssh.com",
    "curve25519-sha256",
    "curve25519-sha256@libssh.org",
)
CIPHERS = (
    "chacha20-poly1305@openssh.com",
    "aes256-gcm@openssh.com",
    "aes128-gcm@openssh.com",
    "aes256-ctr",
    "aes192-ctr",
    "aes128-ctr",
)
MACS = (
    "hmac-sha2-512-etm@openssh.com",
    "hmac-sha2-256-etm@openssh.com",
    "umac-128-etm@openssh.com",
)
HOST_KEY_ALGORITHMS = (
    "ssh-ed25519",
    "rsa-sha2-512",
    "rsa-sha2-256",
    # Only offered while the key file of earlier versions exists (hostkey.py).
    "ecdsa-sha2-nistp256",
)


def _supported(wanted: tuple[str, ...], known: dict[str, Any]) -> tuple[str, ...]:
    return tuple(name for name in wanted if name in known)


# paramiko's tables of what it implements: private, so its stubs leave them out
_PARAMIKO: Any = paramiko.Transport


class HardenedTransport(paramiko.Transport):
    """A paramiko transport that offers only the allow-listed algorithms."""

    _preferred_kex = _supported(KEX, _PARAMIKO._kex_info)
    _preferred_ciphers = _supported(CIPHERS, _PARAMIKO._cipher_info)
    _preferred_macs = _supported(MACS, _PARAMIKO._mac_info)
    _preferred_keys = _supported(HOST_KEY_ALGORITHMS, _PARAMIKO._key_info)
    _preferred_compression = ("none",)
