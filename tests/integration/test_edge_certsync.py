"""HTTPS on an extra edge host: ``gitpaas serve``'s certificates reach ``gitpaas router``
through Redis only (gitpaas/edge/certsync.py, docs/router.md).

serve's side is the real one: its certificate manager issuing from Pebble (whose HTTP-01
requests the router itself answers from Redis), ``certs:add`` and ``certs:remove``
through the certificates service. The router is the real ``gitpaas router`` with a data
dir of its own; what it serves is read by TLS handshakes with SNI.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from cryptography import x509

from gitpaas.edge.certsync import CertMirror, CertSync, cert_key, digest, index_key
from gitpaas.platform import Platform
from gitpaas.services.certs import Certs
from gitpaas.settings import Settings
from tests.pebblekit import Pebble, make_ca_and_cert
from tests.unit.test_audit_trail import make_key

from .routerkit import free_port

GITPAAS = str(Path(sys.executable).parent / "gitpaas")
HOST = "shop.apps.example.test"
OWN = "www.shop.test"


def served(port: int, name: str) -> x509.Certificate:
    """The leaf certificate the edge on ``port`` presents for SNI ``name``."""
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname=name) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def leaf_of(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificates(pem)[0]


def wait_served(port: int, name: str, want: x509.Certificate | None,
                timeout: float = 5.0) -> float:
    """Until the edge serves ``want`` for ``name`` (None: the default certificate);
    the seconds it took."""
    start = time.monotonic()
    while True:
        got = served(port, name)
        if (got == want) if want is not None else "gitpaas-default" in got.subject.rfc4514_string():
            return time.monotonic() - start
        assert time.monotonic() - start < timeout, f"{name}: still serving {got.subject}"
        time.sleep(0.1)


class Router:
    """``gitpaas router`` in a subprocess, its output collected."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.lines: list[str] = []
        self.proc = subprocess.Popen([GITPAAS, "router", "--log-level", "DEBUG"], env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     start_new_session=True, text=True)
        assert self.proc.stdout is not None
        while "edge http port" not in (line := self.proc.stdout.readline()):
            assert line, "gitpaas router exited: " + "".join(self.lines)
            self.lines.append(line)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_output(self, text: str, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            assert time.monotonic() < deadline, f"{text!r} not in: {self.output}"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        subprocess.run([GITPAAS, "edge:stop", "--fast"], env=self.env, capture_output=True,
                       timeout=60)


@contextlib.contextmanager
def router(redis_url: str, instance: str, data_dir: Path) -> Iterator[tuple[Router, int, int]]:
    """A ``gitpaas router`` on its own data dir: (it, http port, https port)."""
    http, https = free_port(), free_port()
    env = dict(os.environ, GITPAAS_HTTP_LISTEN=f"127.0.0.1:{http}",
               GITPAAS_ROUTER_HTTPS_LISTEN=f"127.0.0.1:{https}", GITPAAS_REDIS_URL=redis_url,
               GITPAAS_INSTANCE=instance, GITPAAS_DATA_DIR=str(data_dir),
               GITPAAS_ROUTER_WORKERS="1")
    proc = Router(env)
    try:
        yield proc, http, https
    finally:
        proc.stop()


def files_under(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*") if p.is_file()}


def test_a_router_serves_what_serve_issues_installs_and_removes(
        tmp_path, redis_url, instance, tmp_data_dir):
    """At start and on each publish the router writes serve's certificates (Pebble's,
    certs:add's) into its own data dir and serves them by SNI; a removal is reflected; a
    malformed entry is refused and logged while the others keep being served."""
    router_dir = tmp_path / "router-data"
    router_dir.mkdir()
    served_by_serve = tmp_data_dir / "edge" / "certs"
    with router(redis_url, instance, router_dir) as (proc, http, https):
        pebble = Pebble(tmp_path / "pebble", http_port=http)  # the router answers HTTP-01
        settings = Settings(data_dir=tmp_data_dir, instance=instance, redis_url=redis_url,
                            domain="apps.example.test", acme_directory=pebble.directory,
                            acme_ca_bundle=pebble.ca_bundle)
        platform = Platform(settings)
        try:
            store = platform.store
            alice = make_key(store, "alice")
            store.create_app("shop", "alice", "main", HOST)
            store.update_app("shop", current_version=1)
            store.add_domain("shop", OWN)
            wait_served(https, HOST, None)

            # certs:add (serve's side): the router hears of it and serves it.
            _, own_pem, own_key = make_ca_and_cert([OWN])
            hosts, _ = Certs(platform, alice).add("shop", own_pem, own_key)
            assert hosts == [OWN]
            took = wait_served(https, OWN, leaf_of(own_pem))
            assert took < 3.0
            crt, key = router_dir / "edge" / "certs" / f"{OWN}.crt", \
                router_dir / "edge" / "certs" / f"{OWN}.key"
            assert stat.S_IMODE(key.stat().st_mode) == 0o600
            assert stat.S_IMODE(crt.stat().st_mode) == 0o600
            assert b"PRIVATE KEY" in key.read_bytes()

            # ACME (serve's certificate manager, Pebble validating through the router).
            assert platform.certs.run_once(only_app="shop") == [(HOST, "issue")]
            issued = leaf_of((served_by_serve / f"{HOST}.crt").read_bytes())
            assert "Pebble" in issued.issuer.rfc4514_string()
            wait_served(https, HOST, issued)

            # A malformed entry: refused, logged (never its key), the others still served.
            _, a_pem, _ = make_ca_and_cert(["bad.shop.test"])
            _, _, b_key = make_ca_and_cert(["bad.shop.test"])
            client = redis.Redis.from_url(redis_url)
            prefix = f"{instance}:"
            client.hset(cert_key(prefix, "bad.shop.test"),
                        mapping={"chain": a_pem, "key": b_key, "digest": digest(a_pem, b_key)})
            client.sadd(index_key(prefix), "bad.shop.test")
            client.publish(f"{prefix}certs", "bad.shop.test")
            proc.wait_output("refused the certificate of bad.shop.test")
            assert "does not match" in proc.output
            assert not (router_dir / "edge" / "certs" / "bad.shop.test.crt").exists()
            wait_served(https, "bad.shop.test", None)
            assert served(https, OWN) == leaf_of(own_pem)
            assert served(https, HOST) == issued

            # certs:remove: the router's files go, the default certificate is served.
            Certs(platform, alice).remove("shop", OWN)
            wait_served(https, OWN, None)
            assert not crt.exists() and not key.exists()
            assert served(https, HOST) == issued

            # The router never logged a private key.
            for pem in (own_key, b_key, (served_by_serve / f"{HOST}.key").read_bytes()):
                body = pem.decode().splitlines()[1]
                assert body not in proc.output
        finally:
            platform.store.close()
            pebble.stop()
    assert files_under(router_dir / "edge" / "certs") == {f"{HOST}.crt", f"{HOST}.key"}


def test_a_router_started_later_gets_every_certificate_at_start(
        tmp_path, redis_url, instance, tmp_data_dir):
    """Certificates serve had before the router (or before this version: files not yet in
    Redis) are copied by serve's full pass and written by the router at its start."""
    certs_dir = tmp_data_dir / "edge" / "certs"
    certs_dir.mkdir(parents=True)
    _, pem, key = make_ca_and_cert(["*.apps.example.test"])
    (certs_dir / "*.apps.example.test.crt").write_bytes(pem)   # an admin's, by hand
    (certs_dir / "*.apps.example.test.key").write_bytes(key)
    settings = Settings(data_dir=tmp_data_dir, instance=instance, redis_url=redis_url,
                        domain="apps.example.test")
    platform = Platform(settings)
    try:
        assert platform.certs.run_once() == []   # no ACME; the full pass copies the files
    finally:
        platform.store.close()
    router_dir = tmp_path / "router-data"
    router_dir.mkdir()
    with router(redis_url, instance, router_dir) as (_, _, https):
        wait_served(https, "any.apps.example.test", leaf_of(pem))


def test_the_sync_refuses_hostile_entries_and_keeps_files_it_did_not_write(
        tmp_path, redis_url, instance, caplog):
    """Each entry is checked before a file is written; nothing lands outside the certs
    directory; removal touches only files the sync wrote."""
    prefix = f"{instance}:"
    client = redis.Redis.from_url(redis_url)
    mirror = CertMirror(redis_url, prefix)
    edge_dir = tmp_path / "edge"
    (edge_dir / "certs").mkdir(parents=True)
    _, hand_pem, hand_key = make_ca_and_cert(["hand.example.test"])
    (edge_dir / "certs" / "hand.example.test.crt").write_bytes(hand_pem)
    (edge_dir / "certs" / "hand.example.test.key").write_bytes(hand_key)

    _, good_pem, good_key = make_ca_and_cert(["good.example.test"])
    assert mirror.put("good.example.test", good_pem, good_key)
    _, other_pem, other_key = make_ca_and_cert(["other.example.test"])
    mirror.put("elsewhere.example.test", other_pem, other_key)      # does not cover the host
    mirror.put("hand.example.test", b"not a pem", b"neither")
    for bad in ("../../escape", "x/../../y", ".hidden", "UPPER.example.test"):
        client.hset(cert_key(prefix, bad), mapping={"chain": good_pem, "key": good_key})
        client.sadd(index_key(prefix), bad)
    client.hset(cert_key(prefix, "big.example.test"),
                mapping={"chain": b"A" * (300 * 1024), "key": good_key})
    client.sadd(index_key(prefix), "big.example.test")
    client.set(cert_key(prefix, "type.example.test"), "a string, not a hash")
    client.sadd(index_key(prefix), "type.example.test")

    sync = CertSync(redis_url, prefix, edge_dir)
    with caplog.at_level("INFO", logger="gitpaas.edge.certsync"):
        outcome = sync.sync_all()
    assert outcome == {"good.example.test": "written", "elsewhere.example.test": "refused",
                       "hand.example.test": "refused", "big.example.test": "refused",
                       "type.example.test": "refused"}
    assert files_under(tmp_path) == {
        "edge/certs/good.example.test.crt", "edge/certs/good.example.test.key",
        "edge/certs/hand.example.test.crt", "edge/certs/hand.example.test.key",
        "edge/certs-synced.json"}
    assert (edge_dir / "certs" / "hand.example.test.crt").read_bytes() == hand_pem
    assert "does not cover the host" in caplog.text
    assert "invalid host name '../../escape'" in caplog.text
    assert good_key.decode().splitlines()[1] not in caplog.text
    # Unchanged entries are not read again; refusals are logged once.
    caplog.clear()
    with caplog.at_level("INFO", logger="gitpaas.edge.certsync"):
        again = sync.sync_all()
    assert again["good.example.test"] == "same" and "refused" not in caplog.text

    # Gone from Redis: the synced host's files go, the hand-placed ones stay.
    mirror.delete("good.example.test")
    mirror.delete("hand.example.test")
    assert sync.sync_host("good.example.test") == "removed"
    assert sync.sync_host("hand.example.test") == "absent"
    assert files_under(edge_dir / "certs") == {"hand.example.test.crt",
                                               "hand.example.test.key"}
    # A fresh sync (a restart) knows what it wrote from its manifest.
    mirror.put("good.example.test", good_pem, good_key)
    assert CertSync(redis_url, prefix, edge_dir).sync_host("good.example.test") == "written"
    mirror.delete("good.example.test")
    assert CertSync(redis_url, prefix, edge_dir).sync_all()["good.example.test"] == "removed"


def test_a_valid_entry_never_replaces_nor_removes_an_admins_files(tmp_path, redis_url,
                                                                   instance, caplog):
    """Hand-placed files of a host and a valid Redis entry for it: the entry is refused
    (logged once, host and reason, no key), the files stay, also when the entry goes."""
    prefix = f"{instance}:"
    mirror = CertMirror(redis_url, prefix)
    certs = tmp_path / "edge" / "certs"
    certs.mkdir(parents=True)
    hand, synced = "hand.example.test", "later.example.test"
    _, hand_pem, hand_key = make_ca_and_cert([hand])
    (certs / f"{hand}.crt").write_bytes(hand_pem)
    (certs / f"{hand}.key").write_bytes(hand_key)
    _, redis_pem, redis_key = make_ca_and_cert([hand])
    assert mirror.put(hand, redis_pem, redis_key)
    sync = CertSync(redis_url, prefix, tmp_path / "edge")
    with caplog.at_level("INFO", logger="gitpaas.edge.certsync"):
        assert sync.sync_host(hand) == "refused"
        assert sync.sync_all()[hand] == "refused"
    assert (certs / f"{hand}.crt").read_bytes() == hand_pem
    assert (certs / f"{hand}.key").read_bytes() == hand_key
    refusals = [r.getMessage() for r in caplog.records if hand in r.getMessage()]
    assert len(refusals) == 1 and "the sync did not write" in refusals[0], refusals
    for pem in (hand_key, redis_key):
        assert pem.decode().splitlines()[1] not in caplog.text
    assert hand not in sync.synced
    mirror.delete(hand)
    assert sync.sync_host(hand) == "absent"
    assert files_under(certs) == {f"{hand}.crt", f"{hand}.key"}
    assert (certs / f"{hand}.crt").read_bytes() == hand_pem

    # Hosts the sync wrote: listed in its manifest, removed with their entry.
    _, pem, key = make_ca_and_cert([synced])
    assert mirror.put(synced, pem, key)
    assert sync.sync_host(synced) == "written" and synced in sync.synced
    mirror.delete(synced)
    assert sync.sync_host(synced) == "removed"
    assert files_under(certs) == {f"{hand}.crt", f"{hand}.key"}


def test_serve_copies_its_directory_and_drops_what_is_gone(tmp_path, redis_url, instance,
                                                           caplog):
    """The full pass (``CertStore.mirror_all``): every valid pair of files goes to Redis,
    entries whose files are gone leave it, an invalid pair is not copied."""
    from gitpaas.edge.certstore import CertStore, HostState

    prefix = f"{instance}:"
    client = redis.Redis.from_url(redis_url)
    published: list[str] = []
    store = CertStore(tmp_path, published.append, CertMirror(redis_url, prefix))
    _, pem, key = make_ca_and_cert(["a.example.test"])
    store.install("a.example.test", pem, key, HostState(app="a"))
    assert client.hget(cert_key(prefix, "a.example.test"), "key") == key
    assert published == ["a.example.test"]
    (store.certs_dir / "broken.example.test.crt").write_bytes(b"junk")
    (store.certs_dir / "broken.example.test.key").write_bytes(b"junk")
    client.hset(cert_key(prefix, "stale.example.test"), mapping={"chain": pem, "key": key})
    client.sadd(index_key(prefix), "stale.example.test")
    client.hdel(cert_key(prefix, "a.example.test"), "digest")     # as if changed
    with caplog.at_level("INFO", logger="gitpaas.edge.certsync"):
        assert sorted(store.mirror_all()) == ["a.example.test", "stale.example.test"]
    assert {m.decode() for m in client.smembers(index_key(prefix))} == {"a.example.test"}
    assert not client.exists(cert_key(prefix, "stale.example.test"))
    assert "broken.example.test not copied" in caplog.text
    caplog.clear()
    assert store.mirror_all() == []
    assert "not copied" not in caplog.text    # an unchanged bad pair is logged once
    # A pair that turns bad (a key of another certificate) leaves Redis.
    _, other_pem, _ = make_ca_and_cert(["a.example.test"])
    (store.certs_dir / "a.example.test.crt").write_bytes(other_pem)
    assert store.mirror_all() == ["a.example.test"]
    assert client.smembers(index_key(prefix)) == set()
    store.install("a.example.test", pem, key, HostState(app="a"))
    assert store.remove("a.example.test")
    assert not client.exists(cert_key(prefix, "a.example.test"))
    assert client.smembers(index_key(prefix)) == set()


@pytest.mark.parametrize("marker", ["secret.key", "edge/acme"])
def test_a_router_on_serves_own_data_dir_does_not_sync(tmp_path, redis_url, instance, marker):
    (tmp_path / marker).parent.mkdir(parents=True, exist_ok=True)
    if marker.endswith("acme"):
        (tmp_path / marker).mkdir()
    else:
        (tmp_path / marker).write_bytes(b"x")
    from gitpaas.cli import start_cert_sync

    settings = Settings(data_dir=tmp_path, instance=instance, redis_url=redis_url)
    assert start_cert_sync(settings) is None


def test_a_failed_copy_is_logged_without_the_key(redis_url, instance, caplog):
    """redis-py puts a failed pipeline command's arguments into its message: the log line
    keeps the server's reason only."""
    from gitpaas.edge.certsync import redis_reason

    prefix = f"{instance}:"
    client = redis.Redis.from_url(redis_url)
    client.set(index_key(prefix), "not a set")         # the SADD of the copy fails
    _, pem, key = make_ca_and_cert(["k.example.test"])
    with caplog.at_level("WARNING", logger="gitpaas.edge.certsync"):
        assert not CertMirror(redis_url, prefix).put("k.example.test", pem, key)
    assert "WRONGTYPE" in caplog.text and "SADD" not in caplog.text
    secret = key.decode().splitlines()[1]
    annotated = redis.ResponseError(f"Command # 2 (HSET x key {secret}) of pipeline caused"
                                    " error: OOM command not allowed")
    assert redis_reason(annotated) == "ResponseError: OOM command not allowed"
    assert secret not in redis_reason(redis.ResponseError(f"Command # 2 (HSET {secret})"))


def test_a_sync_stops_when_its_data_dir_turns_out_to_be_serves(tmp_path, redis_url, instance):
    """The default systemd install runs ``serve --no-router`` and ``gitpaas router`` on
    one data dir: a router that started first stops syncing once ``serve`` made it its own."""
    prefix = f"{instance}:"
    sync = CertSync(redis_url, prefix, tmp_path / "edge")
    stop = threading.Event()
    thread = threading.Thread(target=sync.run, args=(stop,), daemon=True)
    thread.start()
    try:
        client = redis.Redis.from_url(redis_url)
        deadline = time.monotonic() + 5
        while client.pubsub_numsub(f"{prefix}certs")[0][1] < 1:
            assert time.monotonic() < deadline, "the sync did not subscribe"
            time.sleep(0.02)
        (tmp_path / "secret.key").write_bytes(b"x")
        _, pem, key = make_ca_and_cert(["late.example.test"])
        CertMirror(redis_url, prefix).put("late.example.test", pem, key)
        client.publish(f"{prefix}certs", "late.example.test")
        thread.join(5)
        assert not thread.is_alive()
        assert not (tmp_path / "edge" / "certs" / "late.example.test.crt").exists()
    finally:
        stop.set()


def test_a_large_copy_is_one_message_and_a_router_reads_it_all(tmp_path, redis_url,
                                                               instance):
    """After an upgrade (or a lost Redis) serve's first pass copies every certificate:
    more than 20 changed hosts make one ``*`` on the channel, which a sync takes as all."""
    from gitpaas.edge.certstore import PUBLISH_EACH_MAX, CertStore

    prefix = f"{instance}:"
    published: list[str] = []
    store = CertStore(tmp_path / "serve", published.append, CertMirror(redis_url, prefix))
    store.certs_dir.mkdir(parents=True)
    _, pem, key = make_ca_and_cert(["*.many.example.test"])
    hosts = [f"h{i}.many.example.test" for i in range(PUBLISH_EACH_MAX + 5)]
    for host in hosts:
        (store.certs_dir / f"{host}.crt").write_bytes(pem)
        (store.certs_dir / f"{host}.key").write_bytes(key)
    assert sorted(store.mirror_all()) == sorted(hosts)
    assert published == ["*"]
    sync = CertSync(redis_url, prefix, tmp_path / "router" / "edge")
    sync.handle(b"*")
    assert sorted(sync.synced) == sorted(hosts)
