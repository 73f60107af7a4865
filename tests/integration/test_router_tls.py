"""Edge conformance: TLS with a certificate per name (SNI) from <data_dir>/edge/certs,
picked up without a reload; HTTP/2; HTTP->HTTPS; ACME HTTP-01 answers from Redis."""

from __future__ import annotations

import datetime
import json
import socket
import ssl
import time
from pathlib import Path

import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .routerkit import backends, get, make_config, running_router, set_route


def _self_signed(directory: Path, name: str) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    (directory / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / f"{name}.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _served_name(port: int, server_name: str) -> str:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, ctx.wrap_socket(
        raw, server_hostname=server_name
    ) as tls:
        der = tls.getpeercert(binary_form=True)
    cert = x509.load_der_x509_certificate(der)
    return cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


def test_certificate_chosen_by_sni_and_forwarded_proto(redis_url, instance):
    config = make_config(redis_url, instance, https_listen=("127.0.0.1", 0))
    with backends("a") as (a,), running_router(config) as router:
        certs = router.certs_dir
        for name in ("shop.example.com", "*.apps.example.com"):
            _self_signed(certs, name)
        assert _served_name(router.tls_port, "shop.example.com") == "shop.example.com"
        assert _served_name(router.tls_port, "x.apps.example.com") == "*.apps.example.com"
        assert _served_name(router.tls_port, "other.org") == "gitpaas-default"
        assert _served_name(router.tls_port, "a.b.apps.example.com") == "gitpaas-default"
        set_route(redis_url, instance, "shop.example.com", a.url)
        ctx = ssl.create_default_context(cafile=str(certs / "shop.example.com.crt"))
        raw = socket.create_connection(("127.0.0.1", router.tls_port), timeout=5)
        with ctx.wrap_socket(raw, server_hostname="shop.example.com") as tls:
            tls.sendall(b"GET /secure HTTP/1.1\r\nHost: shop.example.com\r\n"
                        b"Connection: close\r\n\r\n")
            reply = b""
            while piece := tls.recv(65536):
                reply += piece
        head, body = reply.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 200 ")
        seen = {k.lower(): v for k, v in json.loads(body)["headers"]}
        assert seen["x-forwarded-proto"] == "https"
        assert seen["x-forwarded-port"] == str(router.tls_port)


def test_new_certificate_is_served_within_a_second(redis_url, instance):
    config = make_config(redis_url, instance, https_listen=("127.0.0.1", 0))
    with running_router(config) as router:
        assert _served_name(router.tls_port, "late.example.com") == "gitpaas-default"
        _self_signed(router.certs_dir, "late.example.com")
        written = time.monotonic()
        while _served_name(router.tls_port, "late.example.com") != "late.example.com":
            assert time.monotonic() - written < 2.5
            time.sleep(0.1)


def test_http2_over_tls(redis_url, instance):
    config = make_config(redis_url, instance, https_listen=("127.0.0.1", 0))
    with running_router(config) as router:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(["h2", "http/1.1"])
        with socket.create_connection(("127.0.0.1", router.tls_port), timeout=5) as raw, \
                ctx.wrap_socket(raw, server_hostname="x.example.com") as tls:
            assert tls.selected_alpn_protocol() == "h2"


def test_http_redirects_to_https(redis_url, instance):
    config = make_config(redis_url, instance, https_listen=("127.0.0.1", 0),
                         https_redirect=True)
    with backends("a") as (a,), running_router(config) as router:
        set_route(redis_url, instance, "shop.example.com", a.url)
        status, headers, _ = get(router.port, "shop.example.com", "/cart?id=3")
        assert status == 301
        assert headers["Location"] == f"https://shop.example.com:{router.tls_port}/cart?id=3"
        assert a.hits == 0


def test_acme_challenge_is_answered_from_redis_before_routing(redis_url, instance):
    """The contract with the certificate manager: <prefix>acme:<token> holds the key
    authorization; any host, plain HTTP, before routing and before any redirect."""
    config = make_config(redis_url, instance, https_listen=("127.0.0.1", 0),
                         https_redirect=True)
    client = redis.Redis.from_url(redis_url)
    token = "tok-EN_123"
    with backends("a") as (a,), running_router(config) as router:
        set_route(redis_url, instance, "shop.example.com", a.url)
        client.set(f"{instance}:acme:{token}", f"{token}.thumbprint", ex=60)
        for host in ("shop.example.com", "unknown.example.org"):
            status, _, body = get(router.port, host, f"/.well-known/acme-challenge/{token}")
            assert (status, body) == (200, f"{token}.thumbprint".encode())
        status, _, _ = get(router.port, "shop.example.com", "/.well-known/acme-challenge/nope")
        assert status == 404
        status, _, _ = get(router.port, "shop.example.com", "/.well-known/acme-challenge/a/b")
        assert status == 404
        assert a.hits == 0
    client.delete(f"{instance}:acme:{token}")
    client.close()
