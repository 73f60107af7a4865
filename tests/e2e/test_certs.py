"""certs, certs:add, certs:remove over the real OpenSSH client, as owner, collaborator and
hostile tenant; a deploy whose certificate cannot be had still succeeds."""

from __future__ import annotations

import json
import time

import pytest

from tests.conftest import unique
from tests.harness import make_repo, serving
from tests.pebblekit import free_port
from tests.unit.test_certs import make_cert

pytestmark = pytest.mark.timeout(600)
DAY = 86400.0


def pem(names: list[str], days: float = 60) -> tuple[str, str]:
    chain, key = make_cert(names, time.time() + days * DAY)
    return chain.decode(), key.decode()


def cert_files(server, host: str) -> list[str]:
    d = server.data_dir / "edge" / "certs"
    return sorted(p.name for p in d.iterdir() if p.name.startswith(host)) if d.is_dir() else []


def test_own_certificate_on_stdin_is_installed_listed_and_removed(server):
    assert server.ssh("apps:create", "certshop").returncode == 0
    assert server.ssh("domains:add", "certshop", "www.certshop.example").returncode == 0
    chain, key = pem(["www.certshop.example", "unrelated.example"])
    added = server.ssh("certs:add", "certshop", input=chain + key)
    assert added.returncode == 0, added.stderr
    assert "Installed the certificate for www.certshop.example" in added.stdout
    assert cert_files(server, "www.certshop.example") == ["www.certshop.example.crt",
                                                          "www.certshop.example.key"]
    listed = server.ssh("certs", "certshop")
    assert listed.returncode == 0
    assert "www.certshop.example     valid" in listed.stdout
    assert "automatic HTTPS is off" in listed.stdout  # the default host has none
    as_json = {r["host"]: r for r in json.loads(server.ssh("certs", "certshop",
                                                           "--json").stdout)}
    assert as_json["www.certshop.example"]["source"] == "own"
    assert as_json["certshop.paas.localhost"]["status"] == "none"
    removed = server.ssh("certs:remove", "certshop", "www.certshop.example")
    assert removed.returncode == 0, removed.stderr
    assert cert_files(server, "www.certshop.example") == []
    events = server.ssh("events", "certshop").stdout
    assert "certs:add" in events and "certs:remove" in events


def test_garbage_and_mismatches_are_refused_with_one_line(server):
    assert server.ssh("apps:create", "certjunk").returncode == 0
    host = "certjunk.paas.localhost"
    chain, key = pem([host])
    _, other_key = pem([host])
    expired_chain, expired_key = make_cert([host], time.time() - DAY)
    cases = {
        "garbage\n": "no PEM certificate",
        chain: "exactly one PEM private key",
        chain + other_key: "does not match",
        expired_chain.decode() + expired_key.decode(): "expired",
    }
    for stdin, message in cases.items():
        refused = server.ssh("certs:add", "certjunk", input=stdin)
        assert refused.returncode == 1, stdin
        assert refused.stderr.count("\n") == 1 and message in refused.stderr
    paths = server.ssh("certs:add", "certjunk", "/etc/ssl/x.crt", "/etc/ssl/x.key")
    assert paths.returncode == 1 and "come on stdin" in paths.stderr
    assert cert_files(server, host) == []


def test_a_tenant_cannot_install_a_certificate_for_another_apps_host(server):
    mallory = server.add_key("mallory-certs")
    assert server.ssh("apps:create", "victim").returncode == 0
    assert server.ssh("domains:add", "victim", "www.victim.example").returncode == 0
    assert server.ssh("apps:create", "mallorys", key=mallory).returncode == 0
    chain, key = pem(["www.victim.example", "victim.paas.localhost", "*.paas.localhost"])
    chain_v, key_v = pem(["www.victim.example", "victim.paas.localhost"])
    # Not her app: "not found", like a missing one.
    other = server.ssh("certs:add", "victim", input=chain + key, key=mallory)
    assert other.returncode == 1 and "no app named 'victim'" in other.stderr
    # Her app, a certificate for the victim's names only: refused.
    only_victim = chain_v + key_v
    own = server.ssh("certs:add", "mallorys", input=only_victim, key=mallory)
    assert own.returncode == 1 and "covers none of mallorys's hosts" in own.stderr
    # A wildcard over the platform installs for her own host and nothing else.
    wide = server.ssh("certs:add", "mallorys", input=chain + key, key=mallory)
    assert wide.returncode == 0, wide.stderr
    assert "for mallorys.paas.localhost (" in wide.stdout
    assert cert_files(server, "www.victim.example") == []
    assert cert_files(server, "victim.paas.localhost") == []
    assert server.ssh("certs", "victim", key=mallory).returncode == 1
    assert server.ssh("certs:remove", "victim", "www.victim.example",
                      key=mallory).returncode == 1
    removed = server.ssh("certs:remove", "mallorys", "www.victim.example", key=mallory)
    assert removed.returncode == 1 and "has no host" in removed.stderr


def test_a_collaborator_may_install_and_a_removed_domain_loses_its_certificate(server):
    carol = server.add_key("carol-certs")
    assert server.ssh("apps:create", "sharedcert").returncode == 0
    assert server.ssh("sharing:add", "sharedcert", "carol-certs").returncode == 0
    assert server.ssh("domains:add", "sharedcert", "shop.shared.example").returncode == 0
    chain, key = pem(["*.shared.example"])
    added = server.ssh("certs:add", "sharedcert", input=chain + key, key=carol)
    assert added.returncode == 0, added.stderr
    assert cert_files(server, "shop.shared.example") != []
    assert server.ssh("domains:remove", "sharedcert", "shop.shared.example").returncode == 0
    assert cert_files(server, "shop.shared.example") == []


def test_a_deploy_succeeds_when_its_certificate_cannot_be_had(tmp_path, redis_url,
                                                               docker_client, clients,
                                                               busybox_image):
    """ACME on, its server unreachable: the push succeeds; certs and events say why."""
    from tests.e2e.test_push import httpd_app

    env = {"GITPAAS_ACME_DIRECTORY": f"https://127.0.0.1:{free_port()}/dir"}
    (tmp_path / "srv").mkdir()
    with serving(tmp_path / "srv", redis_url, docker_client, extra_env=env) as srv:
        app = unique("c")
        repo = make_repo(tmp_path / "app", httpd_app(busybox_image, "hi\n"))
        pushed = srv.push(repo, app)
        assert pushed.returncode == 0, pushed.stderr
        assert srv.get(srv.host(app)) == (200, "hi\n")
        deadline = time.monotonic() + 60
        report: dict = {}
        while time.monotonic() < deadline:
            [report] = json.loads(srv.ssh("certs", app, "--json").stdout)
            if report["status"] == "failed":
                break
            time.sleep(0.5)
        assert report["status"] == "failed", report
        assert "cannot reach the ACME server" in report["reason"]
        assert "certs:failed" in srv.ssh("events", app).stdout
