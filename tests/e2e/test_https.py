"""Automatic HTTPS end to end: a pushed app gets its certificate from Pebble through the
real edge (HTTP-01) and serves HTTP/2 over TLS; its HTTP->HTTPS redirect spares ACME."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import redis

from tests.conftest import unique
from tests.harness import Server, make_repo
from tests.pebblekit import Pebble, free_port

pytestmark = pytest.mark.timeout(600)


@pytest.fixture
def https_server(redis_url, docker_client, clients):
    """``gitpaas serve`` with HTTPS on and Pebble as its ACME server."""
    require_curl = shutil.which("curl")
    assert require_curl, "curl is needed (Debian package curl)"
    root = Path(tempfile.mkdtemp(prefix="gp-https-e2e-"))
    http_port, tls_port = free_port(), free_port()
    pebble = Pebble(root / "pebble", http_port=http_port)
    env = {"GITPAAS_ROUTER_HTTPS_LISTEN": f"127.0.0.1:{tls_port}",
           "GITPAAS_ACME_DIRECTORY": pebble.directory,
           "GITPAAS_ACME_CA_BUNDLE": pebble.ca_bundle,
           "GITPAAS_ACME_EMAIL": "ops@example.com"}
    srv = Server(root=root, instance=unique("h"), redis_url=redis_url, extra_env=env,
                 http_port=http_port)
    try:
        srv.admin_key = srv.add_key("admin")
        srv.start()
        yield srv, pebble, tls_port
    finally:
        srv.cleanup(docker_client)
        pebble.stop()
        client = redis.Redis.from_url(redis_url)
        for key in client.scan_iter(match=f"{srv.instance}:*", count=1000):
            client.delete(key)
        client.close()
        shutil.rmtree(root, ignore_errors=True)


def curl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-sS", "--max-time", "10", *args], capture_output=True,
                          text=True, timeout=30)


def test_a_pushed_app_gets_a_certificate_and_serves_http2_over_tls(https_server,
                                                                     busybox_image,
                                                                     tmp_path):
    from tests.e2e.test_push import httpd_app

    srv, pebble, tls_port = https_server
    app = unique("s")
    host = srv.host(app)
    repo = make_repo(tmp_path / "app", httpd_app(busybox_image, "secure hello\n"))
    pushed = srv.push(repo, app)
    assert pushed.returncode == 0, pushed.stderr
    # The deploy queued the app: its certificate comes in the background.
    deadline = time.monotonic() + 90
    report: dict = {}
    while time.monotonic() < deadline:
        [report] = json.loads(srv.ssh("certs", app, "--json").stdout)
        if report["status"] in ("valid", "failed"):
            break
        time.sleep(0.5)
    assert report["status"] == "valid", (report, srv.log()[-3000:])
    assert "Pebble" in report["issuer"] and report["source"] == "acme"
    assert "certs:issued" in srv.ssh("events", app).stdout

    roots = tmp_path / "pebble-root.pem"
    roots.write_bytes(pebble.roots())
    resolve = f"{host}:{tls_port}:127.0.0.1"
    url = f"https://{host}:{tls_port}/"
    deadline = time.monotonic() + 5  # the edge picks the file up within about a second
    while True:
        got = curl("--http2", "--cacert", str(roots), "--resolve", resolve,
                   "-w", "\n%{http_version} %{http_code}", url)
        if got.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert got.returncode == 0, got.stderr
    assert got.stdout == "secure hello\n\n2 200"

    # The app's redirect: plain HTTP answers 301 to HTTPS, ACME challenges still answered.
    assert srv.ssh("edge:set", app, "https-redirect=true").returncode == 0
    time.sleep(1.5)
    plain = curl("-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", "-H",
                 f"Host: {host}", f"http://127.0.0.1:{srv.http_port}/page?q=1")
    assert plain.stdout == f"301 https://{host}:{tls_port}/page?q=1", plain.stdout
    token = "e2e-token_1"
    client = redis.Redis.from_url(srv.redis_url)
    client.set(f"{srv.instance}:acme:{token}", f"{token}.thumb", ex=60)
    challenge = curl("-H", f"Host: {host}",
                     f"http://127.0.0.1:{srv.http_port}/.well-known/acme-challenge/{token}")
    client.close()
    assert challenge.stdout == f"{token}.thumb"
