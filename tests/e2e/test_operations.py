"""Knowing it is healthy: ``doctor`` (one line per problem, exit 2), the same checks as
notifications through the webhook (disk, crash loop, backup failed, deploy failed),
scheduled backups with retention, and rotated logs. Real gitpaas serve, restic, Docker."""

from __future__ import annotations

import datetime
import json
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.e2e.test_push import httpd_app
from tests.harness import make_repo, serving, wait_for

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def ops(tmp_path_factory, redis_url, docker_client, clients, webhook):
    root = tmp_path_factory.mktemp("ops")
    (root / "not-a-directory").write_text("a file where the restic repository should be\n")
    (root / "backup.password").write_text("secret passphrase\n")
    env = {"GITPAAS_WEBHOOK_URL": webhook[0], "GITPAAS_DOCTOR_INTERVAL": "1",
           "GITPAAS_DISK_THRESHOLD": "1", "GITPAAS_CRASH_RESTARTS": "2",
           "GITPAAS_PROCESS_CHECK_SECONDS": "1",
           "GITPAAS_BACKUP_REPO": str(root / "not-a-directory" / "repo"),
           "GITPAAS_BACKUP_PASSWORD_FILE": str(root / "backup.password"),
           "GITPAAS_BACKUP_SCHEDULE": "off"}
    (root / "srv").mkdir()
    with serving(root / "srv", redis_url, docker_client, "o", env) as srv:
        yield srv


def kinds(received: list[dict], kind: str) -> list[dict]:
    return [e for e in received if e.get("event") == "notify" and e.get("kind") == kind]


def expiring_certificate(days: int) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "shop.example.com")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=80))
            .not_valid_after(now + datetime.timedelta(days=days)).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


def test_doctor_prints_one_line_per_problem_and_exits_non_zero(ops):
    certs = ops.data_dir / "edge" / "certs"
    certs.mkdir(parents=True, exist_ok=True)
    (certs / "shop.example.com.crt").write_bytes(expiring_certificate(3))
    (certs / "fine.example.com.crt").write_bytes(expiring_certificate(80))
    result = ops.gitpaas("doctor")
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert any(x.startswith("disk: ") and "threshold 1%" in x for x in lines), lines
    assert "certificate: shop.example.com.crt expires in 2 days" in lines or \
        "certificate: shop.example.com.crt expires in 3 days" in lines, lines
    assert not any("fine.example.com" in x for x in lines)
    assert any(x.startswith("backup: ") for x in lines)
    assert not any(x.startswith(("docker:", "redis:", "edge:")) for x in lines), lines
    over_ssh = ops.ssh("doctor", "--json")
    assert over_ssh.returncode == 2
    assert {p["kind"] for p in json.loads(over_ssh.stdout)} >= {"disk-full",
                                                                "certificate-expiry"}


def test_serve_notifies_a_problem_once_through_the_webhook(ops, webhook):
    _, received = webhook
    assert wait_for(lambda: kinds(received, "disk-full"), 15, "a disk-full notification")
    time.sleep(2.5)  # two more passes of the watcher: the same problem is not sent again
    assert len(kinds(received, "disk-full")) == 1
    event = kinds(received, "disk-full")[0]
    assert "threshold 1%" in event["detail"] and event["instance"] == ops.instance


def test_a_failed_backup_is_an_event_a_notification_and_a_doctor_line(ops, webhook):
    _, received = webhook
    result = ops.ssh("backups:create")
    assert result.returncode == 2 and result.stderr.startswith(" !     restic init failed")
    events = json.loads(ops.gitpaas("events", "--json").stdout)
    assert any(e["action"] == "backup-failed" for e in events)
    assert wait_for(lambda: kinds(received, "backup-failed"), 10,
                    "a backup-failed notification")
    assert "backup: the last backup failed: restic init failed" in ops.gitpaas("doctor").stdout
    assert "secret passphrase" not in ops.log()


def test_restore_is_local_admin_only_and_never_beside_a_running_serve(ops):
    beside = ops.gitpaas("backups:restore", "latest")
    assert beside.returncode == 1 and "gitpaas serve is running" in beside.stderr
    remote = ops.ssh("backups:restore", "latest")
    assert remote.returncode == 1 and "runs on the gitpaas host" in remote.stderr
    bad = ops.ssh("backups:restore", "../../etc")
    assert bad.returncode == 1 and "invalid snapshot" in bad.stderr
    user = ops.add_key("plain-user")
    for argv in (["backups"], ["backups:create"], ["doctor"]):
        refused = ops.ssh(*argv, key=user)
        assert (refused.returncode, refused.stderr) == (1, " !     only admins may do that\n")


def test_a_failed_deploy_is_notified(ops, webhook, busybox_image, tmp_path):
    _, received = webhook
    files = httpd_app(busybox_image, "x\n")
    files["Dockerfile"] += "RUN false\n"
    assert ops.push(make_repo(tmp_path / "broken", files), "broken").returncode != 0
    sent = wait_for(lambda: [e for e in kinds(received, "deploy-failed")
                             if e["app"] == "broken"], 10, "a deploy-failed notification")
    assert sent and sent[0]["detail"]


def test_a_crash_loop_is_a_doctor_line_and_a_notification(ops, webhook, busybox_image,
                                                           tmp_path):
    _, received = webhook
    files = httpd_app(busybox_image, "loop\n")
    files["Procfile"] = ("web: /bin/httpd -f -p 5000 -h /www\n"
                         "worker: sleep 1.5; exit 1\n")
    assert ops.push(make_repo(tmp_path / "loop", files), "loop").returncode == 0
    assert ops.ssh("ps:scale", "loop", "worker=1").returncode == 0
    line = wait_for(lambda: [x for x in ops.gitpaas("doctor").stdout.splitlines()
                             if x.startswith("app loop: ")], 60, "doctor's line on app loop",
                    interval=0.3)
    assert line and "restarted" in line[0] and "worker" in line[0]
    assert wait_for(lambda: [e for e in kinds(received, "crash-loop") if e["app"] == "loop"],
                    10, "a crash-loop notification")


def test_scheduled_backups_run_in_serve_and_logs_rotate(tmp_path, redis_url, docker_client,
                                                        clients, busybox_image):
    (tmp_path / "pw").write_text("another passphrase\n")
    env = {"GITPAAS_BACKUP_REPO": str(tmp_path / "repo"),
           "GITPAAS_BACKUP_PASSWORD_FILE": str(tmp_path / "pw"),
           "GITPAAS_BACKUP_SCHEDULE": "3", "GITPAAS_LOG_FILE": str(tmp_path / "gp.log"),
           "GITPAAS_LOG_MAX_BYTES": "4000"}
    (tmp_path / "srv").mkdir()
    with serving(tmp_path / "srv", redis_url, docker_client, "s", env) as srv:
        repo = make_repo(tmp_path / "app", httpd_app(busybox_image, "sched\n"))
        assert srv.push(repo, "sched").returncode == 0
        wait_for(lambda: json.loads(srv.gitpaas("backups", "--json").stdout or "[]"), 30,
                 "a scheduled backup", interval=0.3)
        # (The edge's access log is nginx's own, rotated by the edge:
        # tests/integration/test_edge_settings.py.)
        # Retention: at most one snapshot a day is kept (keep 7 daily, 4 weekly).
        assert wait_for(lambda: len(json.loads(
            srv.gitpaas("backups", "--json").stdout or "[]")) == 1, 30,
                    "retention to keep one snapshot", interval=0.3)
        assert (tmp_path / "gp.log").is_file()
        assert "another passphrase" not in (tmp_path / "gp.log").read_text()
