"""The ACME client against Pebble: HTTP-01 answered from Redis, as the edge answers it.

Until the nginx edge can serve challenges, a minimal HTTP server here answers
``/.well-known/acme-challenge/<token>`` from the same Redis key the edge reads; the e2e
test (tests/e2e/test_https.py) uses the real edge.
"""

from __future__ import annotations

import contextlib
import stat
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import redis
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gitpaas.edge.acme import AcmeIssuer, IssueError, RedisChallenges, challenge_key
from tests.pebblekit import Pebble


@contextlib.contextmanager
def challenge_server(redis_url: str, prefix: str) -> Iterator[tuple[int, list[str]]]:
    """Answers HTTP-01 from ``<prefix>acme:<token>``; yields (port, hosts asked for)."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    asked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            asked.append(self.headers.get("Host", ""))
            root = "/.well-known/acme-challenge/"
            value = None
            if self.path.startswith(root):
                value = client.get(challenge_key(prefix, self.path[len(root):]))
            body = (value or "not found").encode()
            self.send_response(200 if value else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], asked
    finally:
        server.shutdown()
        server.server_close()
        client.close()


@pytest.fixture
def served(redis_url, instance):
    with challenge_server(redis_url, f"{instance}:") as (port, asked):
        yield port, asked


@pytest.fixture
def pebble(tmp_path, served):
    peb = Pebble(tmp_path / "pebble", http_port=served[0])
    yield peb
    peb.stop()


def issuer(pebble: Pebble, redis_url: str, instance: str, data_dir) -> AcmeIssuer:
    return AcmeIssuer(pebble.directory, data_dir / "account.key",
                      RedisChallenges(redis_url, f"{instance}:"), email="ops@example.com",
                      ca_bundle=pebble.ca_bundle, timeout=30)


def test_a_host_gets_a_certificate_through_http01(pebble, served, redis_url, instance,
                                                  tmp_data_dir):
    acme = issuer(pebble, redis_url, instance, tmp_data_dir)
    issued = acme.issue("shop.apps.example.test")
    chain = x509.load_pem_x509_certificates(issued.chain_pem)
    leaf = chain[0]
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["shop.apps.example.test"]
    assert "Pebble" in leaf.issuer.rfc4514_string()
    key = serialization.load_pem_private_key(issued.key_pem, password=None)
    assert key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) == leaf.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    # Pebble really asked our HTTP port for that host; the answer is gone from Redis.
    assert "shop.apps.example.test" in [h.split(":")[0] for h in served[1]]
    r = redis.Redis.from_url(redis_url)
    assert list(r.scan_iter(match=f"{instance}:acme:*")) == []
    # The account key is kept, private, and the account is found again by it.
    mode = stat.S_IMODE((tmp_data_dir / "account.key").stat().st_mode)
    assert mode == 0o600
    again = issuer(pebble, redis_url, instance, tmp_data_dir).issue("www.example.test")
    assert x509.load_pem_x509_certificates(again.chain_pem)[0].issuer == leaf.issuer


def test_a_challenge_nobody_answers_fails_with_a_reason(tmp_path, redis_url, instance,
                                                        tmp_data_dir):
    with challenge_server(redis_url, "other-instance:") as (port, _):
        peb = Pebble(tmp_path / "pebble", http_port=port)
        try:
            acme = issuer(peb, redis_url, instance, tmp_data_dir)
            with pytest.raises(IssueError) as caught:
                acme.issue("nope.example.test")
        finally:
            peb.stop()
    reason = str(caught.value)
    assert "validation of nope.example.test failed" in reason
    assert "\n" not in reason


def test_an_unreachable_acme_server_is_a_reason_not_a_crash(redis_url, instance,
                                                            tmp_data_dir):
    from tests.pebblekit import free_port

    acme = AcmeIssuer(f"https://127.0.0.1:{free_port()}/dir", tmp_data_dir / "account.key",
                      RedisChallenges(redis_url, f"{instance}:"))
    with pytest.raises(IssueError, match="cannot reach the ACME server"):
        acme.issue("shop.example.test")


def test_the_manager_issues_publishes_and_renews_from_pebble(tmp_path, served, redis_url,
                                                             instance, tmp_data_dir):
    """Every app host gets a certificate; a short-lived one (Pebble issues 20-day
    certificates here) is renewed by the next pass; the edge hears of each file."""
    from gitpaas.edge.certs import CertManager, certs_channel
    from gitpaas.platform import Platform
    from gitpaas.settings import Settings

    peb = Pebble(tmp_path / "pebble", http_port=served[0], validity_seconds=20 * 86400)
    settings = Settings(data_dir=tmp_data_dir, instance=instance, redis_url=redis_url,
                        domain="apps.example.test", acme_directory=peb.directory,
                        acme_email="ops@example.com", acme_ca_bundle=peb.ca_bundle)
    platform = Platform(settings)
    pubsub = redis.Redis.from_url(redis_url, decode_responses=True).pubsub()
    pubsub.subscribe(certs_channel(f"{instance}:"))
    try:
        store = platform.store
        store.add_key("alice", "SHA256:a", "ssh-ed25519 AAAA alice")
        store.create_app("shop", "alice", "main", "shop.apps.example.test")
        store.update_app("shop", current_version=1)
        store.add_domain("shop", "www.shop.test")
        manager = CertManager(platform)
        assert manager.run_once() == [("shop.apps.example.test", "issue"),
                                      ("www.shop.test", "issue")]
        for report in manager.report("shop"):
            assert report.status == "valid" and "Pebble" in report.issuer
            assert report.source == "acme"
        key_file = tmp_data_dir / "edge" / "certs" / "www.shop.test.key"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        first = (tmp_data_dir / "edge" / "certs" / "www.shop.test.crt").read_bytes()
        heard = []
        deadline = time.monotonic() + 5
        while len(heard) < 2 and time.monotonic() < deadline:
            msg = pubsub.get_message(timeout=0.5)
            if msg and msg["type"] == "message":
                heard.append(msg["data"])
        assert sorted(heard) == ["shop.apps.example.test", "www.shop.test"]
        # 20 days left < 30: the next pass renews both.
        assert [o for _, o in manager.run_once()] == ["renew", "renew"]
        assert (tmp_data_dir / "edge" / "certs" / "www.shop.test.crt").read_bytes() != first
        assert [e[2] for e in store.events("shop")][:2] == ["certs:renewed", "certs:renewed"]
    finally:
        pubsub.close()
        platform.store.close()
        peb.stop()
