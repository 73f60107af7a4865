"""A certificate replaced while clients handshake: no handshake fails, the new one is
served within a second (gitpaas_edge.lua ``load_cert``, certstore.write_pair).

Writers replace ``<host>.key`` first, then ``<host>.crt``. A read between the two got the
new key with the old chain; the edge cached that pair for a second, during which
``SSL_use_PrivateKey()`` failed every handshake for the host (the review: 10,217 of
30,330 handshakes failed over 15 rotations). The writer here leaves a wide window
between the two files on purpose (an fsync on a busy disk can): the edge must hold
however long it is.
"""

from __future__ import annotations

import datetime
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gitpaas.edge.certstore import _atomic_write, write_pair

from .routerkit import make_config, running_router

HOST = "rotate.example.com"
ROTATIONS = 12
GAP = 1.3          # seconds between two rotations (more than the edge's 1 s re-read)
WINDOW = 0.05      # between the key's rename and the chain's, in the slow writer
HANDSHAKES_MAX = 40000


def _pair(name: str) -> tuple[bytes, bytes]:
    """A self-signed (chain, key) PEM pair for ``name``."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


def _der(pem: bytes) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pem.decode())


@dataclass
class Handshakes:
    """What a client loop saw: (start time, served DER or None if the handshake failed)."""
    seen: list[tuple[float, bytes | None]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def run(self, port: int, stop: threading.Event, deadline: float) -> None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        while not stop.is_set() and time.monotonic() < deadline \
                and len(self.seen) < HANDSHAKES_MAX:
            start = time.monotonic()
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
                        ctx.wrap_socket(raw, server_hostname=HOST) as tls:
                    self.seen.append((start, tls.getpeercert(binary_form=True)))
            except (ssl.SSLError, OSError) as exc:
                self.seen.append((start, None))
                if len(self.errors) < 5:
                    self.errors.append(repr(exc))


def _served_cn(port: int) -> str:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname=HOST) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der
    cert = x509.load_der_x509_certificate(der)
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def _rotate(certs: Path, publish: redis.Redis, channel: str, pairs: list[tuple[bytes, bytes]],
            atomic_pair: bool) -> list[tuple[float, float, bytes]]:
    """Install each pair in turn as a writer does (publish on the channel, then the key,
    then the chain); (publish time, chain in place time, chain DER) of each."""
    done = []
    for chain, key in pairs:
        time.sleep(GAP)
        published = time.monotonic()
        publish.publish(channel, HOST)
        if atomic_pair:
            write_pair(certs / f"{HOST}.crt", chain, 0o644, certs / f"{HOST}.key", key)
        else:
            _atomic_write(certs / f"{HOST}.key", key, 0o600)
            time.sleep(WINDOW)
            _atomic_write(certs / f"{HOST}.crt", chain, 0o644)
        done.append((published, time.monotonic(), _der(chain)))
    return done


def _check(log: Handshakes, rotations: list[tuple[float, float, bytes]]) -> None:
    failed = [t for t, der in log.seen if der is None]
    assert not failed, (f"{len(failed)} of {len(log.seen)} handshakes failed:"
                        f" {log.errors}")
    for i, (_, in_place, _) in enumerate(rotations):
        until = rotations[i + 1][0] if i + 1 < len(rotations) else float("inf")
        late = [(t, got) for t, got in log.seen if in_place + 1.0 <= t < until]
        assert late, f"rotation {i}: no handshake between 1 s after it and the next"
        newer = {d for _, _, d in rotations[i:]}  # a handshake slow to be answered: later
        stale = [t - in_place for t, got in late if got not in newer]
        assert not stale, f"rotation {i}: an older certificate served {stale[:3]} s after"


def _handshake_through_rotations(redis_url: str, instance: str, atomic_pair: bool) -> None:
    pairs = [_pair(HOST) for _ in range(ROTATIONS + 1)]
    config = make_config(redis_url, instance, https_listen=("127.0.0.1", 0), workers=1)
    client = redis.Redis.from_url(redis_url)
    stop = threading.Event()
    log = Handshakes()
    with running_router(config) as edge:
        certs = edge.certs_dir
        write_pair(certs / f"{HOST}.crt", pairs[0][0], 0o644, certs / f"{HOST}.key",
                   pairs[0][1])
        thread = threading.Thread(target=log.run,
                                  args=(edge.tls_port, stop, time.monotonic() + 120))
        thread.start()
        try:
            rotations = _rotate(certs, client, f"{instance}:certs", pairs[1:], atomic_pair)
            time.sleep(GAP)
        finally:
            stop.set()
            thread.join(30)
        # Removed (after a mismatch was seen or not): the default certificate, at once.
        (certs / f"{HOST}.key").unlink()
        (certs / f"{HOST}.crt").unlink()
        client.publish(f"{instance}:certs", HOST)
        removed = time.monotonic()
        while _served_cn(edge.tls_port) != "gitpaas-default":
            assert time.monotonic() - removed < 1.0, "the removed certificate still served"
            time.sleep(0.02)
    client.close()
    _check(log, rotations)
    assert len(log.seen) > 1000, len(log.seen)


def test_a_key_written_before_its_chain_fails_no_handshake(redis_url, instance):
    """The key in place WINDOW seconds before its chain, at each of ROTATIONS rotations
    while a client handshakes without pause: every handshake succeeds, each with the
    previous or the new pair, and the new one from a second after its chain is in place."""
    _handshake_through_rotations(redis_url, instance, atomic_pair=False)


def test_certificates_written_as_a_pair_rotate_without_a_failed_handshake(redis_url,
                                                                          instance):
    """The writers' way (``write_pair``: both files fsynced under temporary names, then
    renamed, the key first): the same."""
    _handshake_through_rotations(redis_url, instance, atomic_pair=True)


def test_files_left_mismatched_are_never_served(redis_url, instance):
    """A key that is not its chain's, left so: the wildcard's certificate (no previous
    pair) or the previous pair is served, never a failed handshake; the pair once fixed."""
    good, other = _pair(HOST), _pair(HOST)
    wild = _pair("*.example.com")
    config = make_config(redis_url, instance, https_listen=("127.0.0.1", 0), workers=1)
    client = redis.Redis.from_url(redis_url)
    channel = f"{instance}:certs"
    with running_router(config) as edge:
        certs = edge.certs_dir
        write_pair(certs / "*.example.com.crt", wild[0], 0o644, certs / "*.example.com.key",
                   wild[1])
        write_pair(certs / f"{HOST}.crt", good[0], 0o644, certs / f"{HOST}.key", other[1])
        for _ in range(20):
            assert _served_cn(edge.tls_port) == "*.example.com"
        write_pair(certs / f"{HOST}.crt", good[0], 0o644, certs / f"{HOST}.key", good[1])
        client.publish(channel, HOST)
        fixed = time.monotonic()
        while _served_cn(edge.tls_port) != HOST:
            assert time.monotonic() - fixed < 1.0, "the fixed pair was not served"
            time.sleep(0.02)
        _atomic_write(certs / f"{HOST}.key", other[1], 0o600)   # the previous pair stays
        client.publish(channel, HOST)
        time.sleep(0.2)
        for _ in range(20):
            assert _served_cn(edge.tls_port) == HOST
    client.close()
