"""Certificates as files the edge loads per SNI, and what gitpaas knows about each host.

``<data_dir>/edge/certs/<host>.crt`` (full chain, PEM) and ``<host>.key`` (mode 0600) are
written atomically (temp file + rename) and the host name is then published on
``<instance>:certs`` so the edge drops its copy; with a mirror (``certsync.CertMirror``) the
chain and key are copied to Redis first, for edges on other hosts (``gitpaas router``).
``<data_dir>/edge/acme/state/<host>.json``
records the app, where the certificate came from (``acme`` or ``own``) and the last ACME
attempt (pending, failed + reason), for ``certs`` and the renewal pass.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import NameOID

from .. import names
from ..errors import InvalidInput

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from .certsync import CertMirror

MAX_PEM_BYTES = 256 * 1024
MAX_PEM_BLOCKS = 20
PUBLISH_EACH_MAX = 20  # a full copy changing more hosts publishes one "*" (re-read all)
PEM_BEGIN_RE = re.compile(rb"-----BEGIN ([A-Z0-9 ]{1,40})-----")
KEY_LABELS = {"PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY"}


@dataclass(frozen=True)
class CertInfo:
    """What the edge would serve for a host: parsed from its ``.crt`` file."""

    names: tuple[str, ...]
    issuer: str
    not_before: float
    not_after: float


@dataclass
class HostState:
    """gitpaas' record of one host: whose it is and how its last ACME attempt went."""

    app: str
    source: str = "acme"          # "acme" or "own" (certs:add)
    status: str = "none"          # none, pending, valid, failed
    reason: str = ""
    attempts: int = 0             # failed ACME attempts in a row
    next_try: float = 0.0         # no ACME attempt before this time
    updated: float = field(default_factory=time.time)


def covers(pattern: str, host: str) -> bool:
    """Whether a certificate name (``*.example.com`` allowed) covers ``host`` (RFC 6125:
    a wildcard stands for exactly one whole left-most label)."""
    pattern, host = pattern.lower().rstrip("."), host.lower()
    if pattern == host:
        return True
    if pattern.startswith("*.") and not host.startswith("*."):
        head, _, rest = host.partition(".")
        return bool(head) and rest == pattern[2:]
    return False


def cert_names(cert: x509.Certificate) -> tuple[str, ...]:
    """The DNS names of a certificate (its SANs; the CN only when it has none)."""
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        return tuple(n.lower() for n in ext.value.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return tuple(str(cn.value).lower() for cn in cns)


def _issuer(cert: x509.Certificate) -> str:
    for oid in (NameOID.ORGANIZATION_NAME, NameOID.COMMON_NAME):
        attrs = cert.issuer.get_attributes_for_oid(oid)
        if attrs:
            return str(attrs[0].value)
    return cert.issuer.rfc4514_string()


def info_of(chain_pem: bytes) -> CertInfo:
    """The names, issuer and validity of the first (leaf) certificate of a PEM chain."""
    cert = x509.load_pem_x509_certificate(chain_pem)
    return CertInfo(cert_names(cert), _issuer(cert),
                    cert.not_valid_before_utc.timestamp(), cert.not_valid_after_utc.timestamp())


def _public_bytes(key: CertificatePublicKeyTypes) -> bytes:
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


@dataclass(frozen=True)
class Bundle:
    """A certificate chain and its key, checked and normalised to PEM."""

    chain_pem: bytes
    key_pem: bytes
    info: CertInfo


def pem_blocks(data: bytes) -> list[tuple[str, bytes]]:
    """The PEM blocks of ``data`` as (label, block), in one linear pass over its lines
    (a regular expression over many unterminated BEGIN lines takes quadratic time)."""
    blocks: list[tuple[str, bytes]] = []
    label: bytes | None = None
    lines: list[bytes] = []
    for raw in data.splitlines():
        line = raw.strip()
        if label is None:
            match = PEM_BEGIN_RE.fullmatch(line)
            if match:
                label, lines = match.group(1), [line]
            continue
        lines.append(line)
        if line == b"-----END " + label + b"-----":
            blocks.append((label.decode(), b"\n".join(lines) + b"\n"))
            label = None
            if len(blocks) > MAX_PEM_BLOCKS:
                raise InvalidInput(f"more than {MAX_PEM_BLOCKS} PEM blocks")
    return blocks


def parse_bundle(cert_data: bytes, key_data: bytes, now: float | None = None) -> Bundle:
    """Check what ``certs:add`` was given: PEM certificates (leaf first) and the leaf's
    private key, unencrypted, not expired. Anything else is one clear ``InvalidInput``."""
    certs = [b for label, b in pem_blocks(cert_data) if label == "CERTIFICATE"]
    if not certs:
        raise InvalidInput("no PEM certificate found (-----BEGIN CERTIFICATE-----)")
    blocks = pem_blocks(key_data)
    if any(label == "ENCRYPTED PRIVATE KEY" for label, _ in blocks):
        raise InvalidInput("the private key is encrypted: give it without a passphrase")
    keys = [b for label, b in blocks if label in KEY_LABELS]
    if len(keys) != 1:
        raise InvalidInput("give exactly one PEM private key (-----BEGIN PRIVATE KEY-----)")
    try:
        parsed = [x509.load_pem_x509_certificate(c) for c in certs]
    except ValueError as exc:
        raise InvalidInput(f"the certificate is not valid PEM: {exc}") from exc
    try:
        key = serialization.load_pem_private_key(keys[0], password=None)
    except (ValueError, TypeError) as exc:
        raise InvalidInput("the private key is not a valid unencrypted PEM key") from exc
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
                      | ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        raise InvalidInput("the private key must be RSA, ECDSA or EdDSA")
    if _public_bytes(key.public_key()) != _public_bytes(parsed[0].public_key()):
        raise InvalidInput("the private key does not match the (first) certificate")
    info = info_of(certs[0])
    now = time.time() if now is None else now
    if info.not_after <= now:
        raise InvalidInput(f"the certificate expired on {format_time(info.not_after)}")
    chain = b"".join(certs)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return Bundle(chain, key_pem, info)


def format_time(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _safe_host(host: str) -> str:
    """A validated host name, safe as a file name (``*`` is a plain character there)."""
    names.hostname(host)
    if "/" in host or host.startswith("."):
        raise InvalidInput(f"invalid host name {host!r}")
    return host


def _temp_copy(path: Path, data: bytes, mode: int) -> Path:
    """``data`` in a new hidden file next to ``path``, written and fsynced: its name."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode & 0o600)
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    return tmp


def _atomic_write(path: Path, data: bytes, mode: int) -> None:
    os.replace(_temp_copy(path, data, mode), path)


def write_pair(crt: Path, chain_pem: bytes, crt_mode: int, key: Path, key_pem: bytes) -> None:
    """A certificate's chain and key (0600), each file atomically and the two as close
    together as two renames: both are written and fsynced under temporary names first,
    then the key is renamed into place, then the chain. A reader between the two renames
    sees the new key with the old chain: the edge checks each pair it reads and keeps
    serving the previous one until the pair matches (gitpaas_edge.lua, load_cert)."""
    tmp_key = _temp_copy(key, key_pem, 0o600)
    try:
        tmp_crt = _temp_copy(crt, chain_pem, crt_mode)
    except BaseException:
        tmp_key.unlink(missing_ok=True)
        raise
    os.replace(tmp_key, key)
    os.replace(tmp_crt, crt)


class CertStore:
    """The certificate files of the edge and the per-host state next to them."""

    def __init__(self, data_dir: Path, publish: Callable[[str], None] | None = None,
                 mirror: CertMirror | None = None) -> None:
        self.certs_dir = data_dir / "edge" / "certs"
        self.state_dir = data_dir / "edge" / "acme" / "state"
        self._publish = publish or (lambda host: None)
        self._mirror = mirror
        self._lock = threading.Lock()  # a change and a full copy to Redis never interleave

    def crt_path(self, host: str) -> Path:
        return self.certs_dir / f"{_safe_host(host)}.crt"

    def key_path(self, host: str) -> Path:
        return self.certs_dir / f"{_safe_host(host)}.key"

    def _state_path(self, host: str) -> Path:
        return self.state_dir / f"{_safe_host(host)}.json"

    def _dirs(self) -> None:
        for d in (self.certs_dir, self.state_dir):
            d.mkdir(parents=True, exist_ok=True, mode=0o700)

    def install(self, host: str, chain_pem: bytes, key_pem: bytes, state: HostState) -> None:
        """Write the key and the chain (``write_pair``), record ``state``, publish."""
        self._dirs()
        with self._lock:
            write_pair(self.crt_path(host), chain_pem, 0o644, self.key_path(host), key_pem)
            self.save_state(host, state)
            if self._mirror is not None:
                self._mirror.put(host, chain_pem, key_pem)
        self._publish(host)

    def remove(self, host: str) -> bool:
        """Delete the host's certificate, key and state; publish. True if a file went."""
        removed = False
        with self._lock:
            for path in (self.crt_path(host), self.key_path(host), self._state_path(host)):
                try:
                    path.unlink()
                    removed = True
                except FileNotFoundError:
                    pass
            mirrored = self._mirror is not None and self._mirror.delete(host)
        if removed or mirrored:
            self._publish(host)
        return removed

    def info(self, host: str) -> CertInfo | None:
        """The installed certificate of ``host``, or None (missing or unreadable)."""
        try:
            return info_of(self.crt_path(host).read_bytes())
        except (OSError, ValueError):
            return None

    def state(self, host: str) -> HostState | None:
        try:
            raw = json.loads(self._state_path(host).read_text())
            return HostState(**{k: v for k, v in raw.items()
                                if k in HostState.__dataclass_fields__})
        except (OSError, ValueError, TypeError):
            return None

    def save_state(self, host: str, state: HostState) -> None:
        self._dirs()
        _atomic_write(self._state_path(host), json.dumps(asdict(state)).encode(), 0o600)

    def managed_hosts(self) -> list[str]:
        """Every host with a state file (its certificate was installed by gitpaas)."""
        if not self.state_dir.is_dir():
            return []
        return sorted(p.name[: -len(".json")] for p in self.state_dir.iterdir()
                      if p.name.endswith(".json") and not p.name.startswith("."))

    def pairs(self) -> dict[str, tuple[bytes, bytes]]:
        """Every host with a ``.crt`` and a ``.key`` file here (gitpaas' or an admin's):
        host -> (chain, key) as in the files, unchecked (``CertMirror`` checks what it
        copies). Names that are no host name, and files over the PEM limit, are left out."""
        found: dict[str, tuple[bytes, bytes]] = {}
        if not self.certs_dir.is_dir():
            return found
        for crt in sorted(self.certs_dir.glob("*.crt")):
            host = crt.name[: -len(".crt")]
            try:
                key = self.key_path(host)
                if crt.stat().st_size > MAX_PEM_BYTES or key.stat().st_size > MAX_PEM_BYTES:
                    raise InvalidInput("larger than a certificate and its key")
                found[host] = (crt.read_bytes(), key.read_bytes())
            except (OSError, InvalidInput) as exc:
                reason = exc.message if isinstance(exc, InvalidInput) else type(exc).__name__
                log.warning("certificate of %r not copied to Redis: %s", host[:80], reason)
        return found

    def mirror_all(self) -> list[str]:
        """Copy every certificate here to Redis and remove the entries of those gone,
        publishing each changed host (more than ``PUBLISH_EACH_MAX``: one ``*``, which
        edges take as "all"): the changed hosts. Nothing without a mirror."""
        if self._mirror is None:
            return []
        with self._lock:
            changed = self._mirror.reconcile(
                self.pairs(), still_there=lambda h: _is_host_file(self.certs_dir, h))
        for host in changed if len(changed) <= PUBLISH_EACH_MAX else ["*"]:
            self._publish(host)
        return changed


def _is_host_file(certs_dir: Path, host: str) -> bool:
    """Whether ``host`` (any string from Redis) still has a certificate file here."""
    try:
        return (certs_dir / f"{_safe_host(host)}.crt").exists()
    except InvalidInput:
        return False
