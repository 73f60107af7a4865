"""``domains:add APP NAME`` with automatic HTTPS: NAME gets its own certificate from Pebble
(HTTP-01 through the real edge) and the edge serves it over TLS to clients asking for NAME
(SNI), the app's default host keeping its own."""

from __future__ import annotations

import json
import time

import pytest

from tests.conftest import unique
from tests.e2e.test_https import curl, https_server  # noqa: F401 - the fixture
from tests.harness import make_repo

pytestmark = pytest.mark.timeout(600)


def wait_valid(srv, app: str, host: str, timeout: float = 90.0) -> dict:
    deadline = time.monotonic() + timeout
    report: dict = {}
    while time.monotonic() < deadline:
        reports = {r["host"]: r for r in json.loads(srv.ssh("certs", app, "--json").stdout)}
        report = reports.get(host, {})
        if report.get("status") in ("valid", "failed"):
            break
        time.sleep(0.5)
    assert report.get("status") == "valid", (report, srv.log()[-3000:])
    return report


def test_an_added_domain_gets_a_certificate_and_is_served_with_its_sni_name(
        https_server, busybox_image, tmp_path):  # noqa: F811 - the fixture
    from tests.e2e.test_push import httpd_app

    srv, pebble, tls_port = https_server
    app = unique("d")
    repo = make_repo(tmp_path / "app", httpd_app(busybox_image, "domain hello\n"))
    pushed = srv.push(repo, app)
    assert pushed.returncode == 0, pushed.stderr
    wait_valid(srv, app, srv.host(app))
    name = f"www.{app}.example"
    added = srv.ssh("domains:add", app, name)
    assert added.returncode == 0, added.stderr
    report = wait_valid(srv, app, name)
    assert "Pebble" in report["issuer"] and report["source"] == "acme"
    events = " ".join(srv.ssh("events", app).stdout.split())
    assert f"certs:issued {app} {name} until" in events

    roots = tmp_path / "pebble-root.pem"
    roots.write_bytes(pebble.roots())
    # curl checks the certificate against Pebble's root and against NAME, sent as SNI
    deadline = time.monotonic() + 5
    while True:
        got = curl("--cacert", str(roots), "--resolve", f"{name}:{tls_port}:127.0.0.1",
                   "-w", "\n%{http_code}", f"https://{name}:{tls_port}/")
        if got.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert got.returncode == 0, got.stderr
    assert got.stdout == "domain hello\n\n200"
    # the default host still gets its own certificate, not NAME's
    default = curl("--cacert", str(roots), "--resolve",
                   f"{srv.host(app)}:{tls_port}:127.0.0.1", "-o", "/dev/null",
                   "-w", "%{http_code}", f"https://{srv.host(app)}:{tls_port}/")
    assert default.returncode == 0 and default.stdout == "200", default.stderr
