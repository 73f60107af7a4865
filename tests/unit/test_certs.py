"""Automatic HTTPS logic with a fake clock and a fake ACME issuer (no daemons)."""

from __future__ import annotations

import datetime
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gitpaas.edge.acme import Issued, IssueError
from gitpaas.edge.certs import RENEW_BEFORE, CertManager, describe, plan, retry_delay
from gitpaas.edge.certstore import CertInfo, CertStore, HostState, covers, parse_bundle
from gitpaas.errors import InvalidInput
from gitpaas.platform import Platform
from gitpaas.settings import Settings

DAY = 86400.0
T0 = 1_900_000_000.0  # the fake clock's "now"


def make_cert(names: list[str], not_after: float, not_before: float | None = None,
              key=None) -> tuple[bytes, bytes]:
    """(chain PEM, key PEM) of a self-signed certificate for ``names``."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    start = datetime.datetime.fromtimestamp(not_before or not_after - 90 * DAY, datetime.UTC)
    end = datetime.datetime.fromtimestamp(not_after, datetime.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


def info(expires: float, names=("shop.example.com",)) -> CertInfo:
    return CertInfo(tuple(names), "Test CA", expires - 90 * DAY, expires)


# -- the plan ---------------------------------------------------------------------------

def test_a_host_without_certificate_needs_one_and_a_valid_one_nothing():
    assert plan("shop.example.com", None, None, T0) == "issue"
    assert plan("shop.example.com", HostState("shop"), info(T0 + 60 * DAY), T0) is None


def test_renewal_starts_30_days_before_expiry():
    state = HostState("shop", status="valid")
    assert plan("shop.example.com", state, info(T0 + RENEW_BEFORE + 60), T0) is None
    assert plan("shop.example.com", state, info(T0 + RENEW_BEFORE - 60), T0) == "renew"
    assert plan("shop.example.com", state, info(T0 - 1), T0) == "issue"  # expired


def test_a_certificate_for_other_names_is_replaced():
    assert plan("shop.example.com", None, info(T0 + 60 * DAY, ["www.example.com"]),
                T0) == "issue"


def test_own_certificates_and_wildcards_are_never_requested():
    own = HostState("shop", source="own", status="valid")
    assert plan("shop.example.com", own, info(T0 + DAY), T0) is None
    assert plan("shop.example.com", own, None, T0) is None
    assert plan("*.example.com", None, None, T0) is None


def test_a_failure_backs_off_and_a_trigger_retries_after_a_minute():
    failed = HostState("shop", status="failed", attempts=2, next_try=T0 + 1200, updated=T0)
    assert plan("shop.example.com", failed, None, T0 + 600) is None
    assert plan("shop.example.com", failed, None, T0 + 1200) == "issue"
    assert plan("shop.example.com", failed, None, T0 + 30, triggered=True) is None
    assert plan("shop.example.com", failed, None, T0 + 61, triggered=True) == "issue"


def test_retry_delays_grow_to_a_day():
    assert [retry_delay(n) for n in (1, 2, 3)] == [300, 1200, 4800]
    assert retry_delay(10) == DAY


def test_describe_says_why():
    assert describe("a.example.com", None, None, T0, acme_on=False).reason.startswith(
        "automatic HTTPS is off")
    assert describe("*.example.com", None, None, T0, True).reason.startswith("a wildcard")
    failed = describe("a.example.com", HostState("a", status="failed", reason="boom"),
                      info(T0 + 40 * DAY), T0, True)
    assert failed.status == "failed" and "boom (still serving" in failed.reason
    assert describe("a.example.com", HostState("a"), info(T0 - 1), T0, True).status == \
        "expired"


# -- certificates given by users --------------------------------------------------------

def test_covers_follows_rfc_6125():
    assert covers("*.example.com", "www.example.com")
    assert not covers("*.example.com", "a.b.example.com")
    assert not covers("*.example.com", "example.com")
    assert covers("*.example.com", "*.example.com")  # a wildcard host, a wildcard cert
    assert covers("WWW.example.com", "www.example.com")


def test_parse_bundle_refuses_garbage_with_one_line():
    chain, key = make_cert(["shop.example.com"], T0 + 60 * DAY)
    _, other_key = make_cert(["shop.example.com"], T0 + 60 * DAY)
    cases = [(b"garbage", key, "no PEM certificate"),
             (chain, b"garbage", "exactly one PEM private key"),
             (chain, other_key, "does not match"),
             (chain, key + other_key, "exactly one"),
             (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----", key,
              "not valid PEM"),
             (chain, b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----",
              "not a valid unencrypted")]
    for cert_data, key_data, message in cases:
        with pytest.raises(InvalidInput, match=message) as caught:
            parse_bundle(cert_data, key_data, now=T0)
        assert "\n" not in caught.value.message
    with pytest.raises(InvalidInput, match="expired"):
        parse_bundle(chain, key, now=T0 + 61 * DAY)
    bundle = parse_bundle(chain + key, chain + key, now=T0)  # one stream holding both
    assert bundle.info.names == ("shop.example.com",)


# -- the manager with a fake issuer -----------------------------------------------------

class FakeIssuer:
    def __init__(self, clock) -> None:
        self.clock = clock
        self.fail: str | None = None
        self.issued: list[str] = []

    def issue(self, host: str) -> Issued:
        if self.fail:
            raise IssueError(self.fail)
        self.issued.append(host)
        chain, key = make_cert([host], self.clock() + 90 * DAY, not_before=self.clock())
        return Issued(chain, key)


class FakeSignals:
    def __init__(self) -> None:
        self.published: list[str] = []

    def publish(self, host: str) -> None:
        self.published.append(host)

    def request(self, app: str) -> None:
        pass


@pytest.fixture
def manager(tmp_path):
    now = [T0]
    platform = Platform(Settings(data_dir=tmp_path, domain="example.com"))
    platform.store.add_key("alice", "SHA256:a", "ssh-ed25519 AAAA alice")
    platform.store.create_app("shop", "alice", "main", "shop.example.com")
    platform.store.update_app("shop", current_version=1)
    issuer = FakeIssuer(lambda: now[0])
    mgr = CertManager(platform, clock=lambda: now[0], issuer=issuer, signals=FakeSignals())
    yield mgr, now, issuer
    platform.store.close()


def test_a_pass_issues_then_renews_30_days_before_expiry(manager):
    mgr, now, issuer = manager
    assert mgr.run_once() == [("shop.example.com", "issue")]
    assert mgr.signals.published == ["shop.example.com"]
    assert mgr.run_once() == []
    now[0] += 59 * DAY            # 31 days left
    assert mgr.run_once() == []
    now[0] += 2 * DAY             # 29 days left
    assert mgr.run_once() == [("shop.example.com", "renew")]
    [report] = mgr.report("shop")
    assert report.status == "valid" and report.expires == pytest.approx(now[0] + 90 * DAY)
    actions = [e[2] for e in mgr.platform.store.events("shop")]
    assert actions == ["certs:renewed", "certs:issued"]


def test_a_failure_shows_in_certs_and_events_and_is_retried_later(manager):
    mgr, now, issuer = manager
    issuer.fail = "validation of shop.example.com failed: connection refused"
    assert mgr.run_once() == [("shop.example.com", "failed")]
    [report] = mgr.report("shop")
    assert (report.status, report.reason) == ("failed", issuer.fail)
    [event] = mgr.platform.store.events("shop")
    assert event[1:3] == ("acme", "certs:failed") and issuer.fail in event[4]
    assert mgr.run_once() == []                      # backing off
    issuer.fail = None
    now[0] += retry_delay(1)
    assert mgr.run_once() == [("shop.example.com", "issue")]
    assert mgr.report("shop")[0].status == "valid"


def test_a_certificate_of_a_host_no_app_has_is_removed(manager):
    mgr, now, issuer = manager
    chain, key = make_cert(["gone.example.org"], T0 + 60 * DAY)
    mgr.store.install("gone.example.org", chain, key, HostState("shop", source="own"))
    mgr.run_once()
    assert not mgr.store.crt_path("gone.example.org").exists()
    assert not mgr.store.key_path("gone.example.org").exists()


def test_files_are_private_and_written_whole(tmp_path):
    store = CertStore(tmp_path)
    chain, key = make_cert(["a.example.com"], T0 + 60 * DAY)
    store.install("a.example.com", chain, key, HostState("a"))
    assert store.key_path("a.example.com").stat().st_mode & 0o777 == 0o600
    assert store.crt_path("a.example.com").read_bytes() == chain
    assert [p.name for p in store.certs_dir.iterdir() if p.name.startswith(".")] == []
    assert json.loads((store.state_dir / "a.example.com.json").read_text())["app"] == "a"
    with pytest.raises(InvalidInput):
        store.crt_path("../etc/passwd")


def test_many_unterminated_pem_lines_are_parsed_in_linear_time():
    import time

    chain, key = make_cert(["shop.example.com"], T0 + 60 * DAY)
    for junk in (b"-----BEGIN CERTIFICATE-----\n", b"-----BEGIN PRIVATE KEY-----\n"):
        data = (junk * 10000)[: 256 * 1024]
        started = time.monotonic()
        with pytest.raises(InvalidInput):
            parse_bundle(data, data, now=T0)
        assert time.monotonic() - started < 1.0
    with pytest.raises(InvalidInput, match="more than 20 PEM blocks"):
        parse_bundle(chain * 21, key, now=T0)
    encrypted = (b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n"
                 b"-----END ENCRYPTED PRIVATE KEY-----\n")
    with pytest.raises(InvalidInput, match="encrypted"):
        parse_bundle(chain, encrypted, now=T0)


def test_certs_names_a_wildcard_file_the_edge_serves_meanwhile(manager):
    mgr, now, issuer = manager
    mgr.issuer = None  # ACME off
    chain, key = make_cert(["*.example.com"], T0 + 60 * DAY)
    mgr.store.certs_dir.mkdir(parents=True)  # put there by an admin, by hand
    (mgr.store.certs_dir / "*.example.com.crt").write_bytes(chain)
    (mgr.store.certs_dir / "*.example.com.key").write_bytes(key)
    mgr.run_once()  # a pass leaves files it did not install alone
    [report] = mgr.report("shop")
    assert report.status == "none" and report.reason == "the edge serves *.example.com meanwhile"


def test_an_unexpected_error_is_a_failure_not_a_host_stuck_pending(manager):
    mgr, now, issuer = manager

    def broken(host: str) -> Issued:
        raise RuntimeError("surprise")

    issuer.issue = broken
    assert mgr.run_once() == [("shop.example.com", "failed")]
    [report] = mgr.report("shop")
    assert report.status == "failed" and report.reason.startswith("internal error")


def test_a_deploy_retries_a_failed_host_after_a_minute_not_before(manager):
    mgr, now, issuer = manager
    issuer.fail = "boom"
    assert mgr.run_once() == [("shop.example.com", "failed")]
    now[0] += 30
    assert mgr.run_once("shop") == []          # triggered, but too soon
    issuer.fail = None
    now[0] += 31
    assert mgr.run_once("shop") == [("shop.example.com", "issue")]
