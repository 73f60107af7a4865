"""Automatic HTTPS through the real edge: Pebble validates HTTP-01 against nginx, which
answers from Redis; the certificate is then served by SNI, without a reload, over HTTP/2."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import time

from cryptography import x509

from gitpaas.edge.certs import CertManager
from gitpaas.platform import Platform
from gitpaas.settings import Settings
from tests.pebblekit import Pebble

from .routerkit import backends, make_config, running_router, set_route

HOST = "shop.apps.example.test"


def handshake(port: int, name: str, cafile: str | None) -> tuple[x509.Certificate, str]:
    """(served leaf, ALPN protocol) of a TLS handshake offering h2 and http/1.1."""
    ctx = ssl.create_default_context(cafile=cafile)
    if cafile is None:
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname=name) as tls:
        der = tls.getpeercert(binary_form=True)
        return x509.load_der_x509_certificate(der), tls.selected_alpn_protocol() or ""


def test_a_host_gets_its_certificate_through_the_edge_and_serves_http2(
        tmp_path, redis_url, instance, tmp_data_dir):
    config = make_config(redis_url, instance, directory=tmp_data_dir / "edge",
                         https_listen=("127.0.0.1", 0), https_redirect=True)
    with backends("a") as (a,), running_router(config) as edge:
        pebble = Pebble(tmp_path / "pebble", http_port=edge.port)
        settings = Settings(data_dir=tmp_data_dir, instance=instance, redis_url=redis_url,
                            domain="apps.example.test", acme_directory=pebble.directory,
                            acme_ca_bundle=pebble.ca_bundle)
        platform = Platform(settings)
        try:
            store = platform.store
            store.add_key("alice", "SHA256:a", "ssh-ed25519 AAAA alice")
            store.create_app("shop", "alice", "main", HOST)
            store.update_app("shop", current_version=1)
            set_route(redis_url, instance, HOST, a.url)
            before, _ = handshake(edge.tls_port, HOST, None)
            assert "gitpaas-default" in before.subject.rfc4514_string()

            # Pebble's HTTP-01 request reaches nginx, which answers before redirecting.
            assert CertManager(platform).run_once() == [(HOST, "issue")]
            [report] = CertManager(platform).report("shop")
            assert report.status == "valid", report

            roots = tmp_path / "pebble-root.pem"
            roots.write_bytes(pebble.roots())
            deadline = time.monotonic() + 3  # the edge reloads per SNI within ~1 s
            while True:
                try:
                    leaf, alpn = handshake(edge.tls_port, HOST, str(roots))
                    break
                except ssl.SSLCertVerificationError:
                    assert time.monotonic() < deadline, "the edge kept the old certificate"
                    time.sleep(0.1)
            assert "Pebble" in leaf.issuer.rfc4514_string() and alpn == "h2"
            if shutil.which("curl"):
                out = subprocess.run(
                    ["curl", "-sS", "--http2", "--cacert", str(roots), "--resolve",
                     f"{HOST}:{edge.tls_port}:127.0.0.1", "-o", "/dev/null", "-w",
                     "%{http_version} %{http_code}", f"https://{HOST}:{edge.tls_port}/x"],
                    capture_output=True, text=True, timeout=30)
                assert out.stdout == "2 200", out.stderr
                assert a.hits >= 1
        finally:
            platform.store.close()
            pebble.stop()
