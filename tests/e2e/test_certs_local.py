"""``gitpaas certs:add APP CRT KEY`` run on the server (the local admin CLI's two-file form,
docs/commands.md): installed and served by the edge over TLS to its SNI name; a bad pair
is refused with one line and installs nothing (an installed certificate stays)."""

from __future__ import annotations

import json
import socket
import ssl
import time
from pathlib import Path

import pytest

from tests.e2e.test_certs import cert_files
from tests.harness import serving
from tests.pebblekit import free_port
from tests.unit.test_certs import make_cert

pytestmark = pytest.mark.timeout(600)
DAY = 86400.0
NAME = "www.localcert.example"


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory, redis_url, docker_client, clients):
    """A running server whose edge listens for TLS too: (server, TLS port)."""
    port = free_port()
    env = {"GITPAAS_ROUTER_HTTPS_LISTEN": f"127.0.0.1:{port}"}
    with serving(tmp_path_factory.mktemp("certs-local"), redis_url, docker_client, "l",
                 env) as srv:
        yield srv, port


def write_pair(directory: Path, names: list[str], days: float = 60,
               key=None) -> tuple[Path, Path]:
    chain, key_pem = make_cert(names, time.time() + days * DAY, key=key)
    directory.mkdir(parents=True, exist_ok=True)
    crt, keyfile = directory / "site.crt", directory / "site.key"
    crt.write_bytes(chain)
    keyfile.write_bytes(key_pem)
    return crt, keyfile


def served_certificate(port: int, name: str) -> bytes:
    """The DER certificate the edge presents to a client asking for ``name`` (SNI)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname=name) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def test_two_files_on_the_server_are_installed_and_served(tls_server, tmp_path):
    srv, tls_port = tls_server
    assert srv.gitpaas("apps:create", "localcert").returncode == 0
    assert srv.gitpaas("domains:add", "localcert", NAME).returncode == 0
    crt, key = write_pair(tmp_path / "good", [NAME])
    added = srv.gitpaas("certs:add", "localcert", str(crt), str(key))
    assert added.returncode == 0, added.stderr
    assert f"Installed the certificate for {NAME} (valid until" in added.stdout
    assert cert_files(srv, NAME) == [f"{NAME}.crt", f"{NAME}.key"]
    [report] = [r for r in json.loads(srv.gitpaas("certs", "localcert", "--json").stdout)
                if r["host"] == NAME]
    assert (report["status"], report["source"]) == ("valid", "own")
    assert "certs:add" in srv.gitpaas("events", "localcert").stdout
    expected = ssl.PEM_cert_to_DER_cert(crt.read_text())
    deadline = time.monotonic() + 5  # the edge reads the file at the next handshake
    while served_certificate(tls_port, NAME) != expected:
        assert time.monotonic() < deadline, "the edge does not serve the new certificate"
        time.sleep(0.2)


def test_a_bad_pair_is_refused_with_one_line_and_installs_nothing(tls_server, tmp_path):
    srv, tls_port = tls_server
    assert srv.gitpaas("apps:create", "badcert").returncode == 0
    host = "www.badcert.example"
    assert srv.gitpaas("domains:add", "badcert", host).returncode == 0
    good_crt, good_key = write_pair(tmp_path / "good", [host])
    assert srv.gitpaas("certs:add", "badcert", str(good_crt), str(good_key)).returncode == 0
    installed = {p: (srv.data_dir / "edge" / "certs" / p).read_bytes()
                 for p in cert_files(srv, host)}
    other_crt, _ = write_pair(tmp_path / "other", [host])
    expired_crt, expired_key = write_pair(tmp_path / "expired", [host], days=-1)
    foreign_crt, foreign_key = write_pair(tmp_path / "foreign", ["elsewhere.example"])
    missing = tmp_path / "missing.key"
    cases = [
        ((other_crt, good_key), "does not match"),  # a key of another certificate
        ((good_key, good_crt), "no PEM certificate"),  # the two files swapped
        ((good_crt, good_crt), "exactly one PEM private key"),  # no key at all
        ((expired_crt, expired_key), "expired"),
        ((foreign_crt, foreign_key), "covers none of badcert's hosts"),
        ((good_crt, missing), f"cannot read {missing}: No such file or directory"),
        ((good_crt, tmp_path), f"cannot read {tmp_path}: Is a directory"),
    ]
    for (crt, key), message in cases:
        refused = srv.gitpaas("certs:add", "badcert", str(crt), str(key))
        assert refused.returncode == 1, (crt, key, refused.stdout)
        assert refused.stderr.startswith(" !     ") and refused.stderr.count("\n") == 1, \
            refused.stderr
        assert message in refused.stderr, refused.stderr
        assert refused.stdout == ""
    # nothing half-done: the certificate installed before is the one on disk and served
    assert {p: (srv.data_dir / "edge" / "certs" / p).read_bytes()
            for p in cert_files(srv, host)} == installed
    assert served_certificate(tls_port, host) == ssl.PEM_cert_to_DER_cert(
        good_crt.read_text())
    events = srv.gitpaas("events", "badcert").stdout
    assert events.count("certs:add") == 1
