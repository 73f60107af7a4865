"""The backup schedule, its settings, and the doctor's backup and certificate checks."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gitpaas import doctor
from gitpaas.backups import restic, schedule
from gitpaas.errors import InvalidInput
from gitpaas.settings import load
from gitpaas.store import Backup


class FakeStore:
    def __init__(self, rows):
        self.rows = rows  # (snapshot, status, detail, started_at, finished_at), oldest first

    def last_backup(self, status=None):
        rows = [Backup(*r) for r in self.rows if status is None or r[1] == status]
        return rows[-1] if rows else None


class FakePlatform:
    def __init__(self, settings, rows=()):
        self.settings = settings
        self.store = FakeStore(list(rows))


def settings(tmp_path, **values):
    return load({"data_dir": tmp_path, **values}, environ={})


def test_schedule_settings(tmp_path):
    assert settings(tmp_path).backup_interval == 0  # no repository: no schedule
    assert settings(tmp_path, backup_repo="/b").backup_interval == 86400
    assert settings(tmp_path, backup_repo="/b", backup_schedule="hourly").backup_interval == 3600
    assert settings(tmp_path, backup_repo="/b", backup_schedule="off").backup_interval == 0
    assert settings(tmp_path, backup_repo="/b", backup_schedule="90").backup_interval == 90
    for bad in ("sometimes", "-5", "0"):
        with pytest.raises(InvalidInput, match="backup_schedule"):
            settings(tmp_path, backup_schedule=bad)
    assert settings(tmp_path).backup_password_path == tmp_path / "backup.password"


def test_a_backup_is_due_after_the_interval_and_a_failure_is_retried_sooner(tmp_path):
    s = settings(tmp_path, backup_repo="/b")
    assert schedule.due(s, FakeStore([]), now=1000.0)
    ok = ("abc", "succeeded", "", 0.0, 1000.0)
    assert not schedule.due(s, FakeStore([ok]), now=1000.0 + 86399)
    assert schedule.due(s, FakeStore([ok]), now=1000.0 + 86400)
    failed = ("", "failed", "boom", 0.0, 5000.0)
    assert not schedule.due(s, FakeStore([ok, failed]), now=5000.0 + 3599)
    assert schedule.due(s, FakeStore([ok, failed]), now=5000.0 + 3600)
    assert not schedule.due(settings(tmp_path), FakeStore([]), now=1e9)  # off


def test_doctor_backup_age(tmp_path):
    s = settings(tmp_path, backup_repo="/b")
    now = 10 * 86400.0
    assert doctor.check_backups(FakePlatform(settings(tmp_path)), now) == []
    assert "no backup was ever made" in doctor.check_backups(FakePlatform(s), now)[0].message
    fresh = ("a", "succeeded", "", now - 100, now - 90)
    assert doctor.check_backups(FakePlatform(s, [fresh]), now) == []
    old = ("a", "succeeded", "", 0.0, now - 3 * 86400)
    [problem] = doctor.check_backups(FakePlatform(s, [old]), now)
    assert problem.kind == "backup-stale" and "72 hours old" in problem.message
    failed = ("", "failed", "restic backup failed: no space", now - 10, now - 5)
    [problem] = doctor.check_backups(FakePlatform(s, [fresh, failed]), now)
    assert problem.kind == "backup-failed" and "no space" in problem.message


def certificate(days: float) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x.example.com")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now - datetime.timedelta(days=30))
            .not_valid_after(now + datetime.timedelta(days=days)).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


def test_doctor_certificate_expiry(tmp_path):
    certs = tmp_path / "edge" / "certs"
    certs.mkdir(parents=True)
    (certs / "soon.crt").write_bytes(certificate(5.5))
    (certs / "gone.crt").write_bytes(certificate(-2.5))
    (certs / "later.crt").write_bytes(certificate(60))
    (certs / "soon.key").write_text("not a certificate")
    (certs / "junk.pem").write_text("-----BEGIN CERTIFICATE-----\nnope\n")
    lines = sorted(p.message for p in doctor.check_certificates(FakePlatform(
        settings(tmp_path))))
    assert lines == ["certificate: gone.crt expired 2 days ago",
                     "certificate: soon.crt expires in 5 days"]


def test_restic_gets_the_password_from_a_file_never_the_command_line(tmp_path, monkeypatch):
    monkeypatch.setenv("RESTIC_PASSWORD", "leaked")
    client = restic.Restic("/repo", tmp_path / "pw")
    env = client._env()
    assert env["RESTIC_PASSWORD_FILE"] == str(tmp_path / "pw")
    assert "RESTIC_PASSWORD" not in env and env["RESTIC_REPOSITORY"] == "/repo"
    with pytest.raises(InvalidInput, match="password file"):
        client.run(["snapshots"])
    with pytest.raises(InvalidInput, match="not configured"):
        restic.Restic("", tmp_path / "pw")
