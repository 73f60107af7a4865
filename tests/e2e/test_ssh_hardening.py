"""Issue 11, findings 6 and 8, against a real ``gitpaas serve``: ssh-audit finds nothing to
fail and sees the pre-auth throttle; SSH comes back by itself after the process ran out of
file descriptors. (The OpenSSH client and git keep working: every other e2e test.)"""

from __future__ import annotations

import os
import re
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import require
from tests.harness import serving

SSH_AUDIT = Path(sys.executable).parent / "ssh-audit"


@pytest.fixture(scope="module")
def srv(tmp_path_factory, redis_url, docker_client, clients):
    with serving(tmp_path_factory.mktemp("sshhard"), redis_url, docker_client,
                 prefix="sshh") as server:
        yield server


def test_ssh_audit_reports_no_fail_and_the_throttle(srv):
    require(SSH_AUDIT.exists(), "ssh-audit (pip install -e '.[dev]')")
    time.sleep(2)  # a full token bucket, as a first-time auditor would find it
    result = subprocess.run([str(SSH_AUDIT), "-d", "-n", "-p", str(srv.ssh_port), "127.0.0.1"],
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, "NO_COLOR": "1"})
    out = result.stdout + result.stderr
    report = [line for line in out.splitlines() if not line.startswith("DHEat")
              and "debug" not in line.lower()[:12]]
    assert "(key) ssh-ed25519" in out, out[-3000:]
    assert not [line for line in report if "[fail]" in line], out[-3000:]
    for weak in ("cbc", "3des", "hmac-md5", "hmac-sha1", "nistp", "group14"):
        assert weak not in "\n".join(line for line in report if line.startswith("(")), weak
    assert "insufficient connection throttling" not in out, out[-3000:]
    rate = re.search(r"dh_rate_test\(\) results: ([\d.]+) connections opened per second", out)
    assert rate is not None, out[-3000:]  # the DHEat rate test did run
    assert float(rate.group(1)) < 20.0
    assert result.returncode in (0, 2), out[-3000:]  # 3: failures (2: warnings only)
    # The auditor's flood did not lock the admin out for long.
    time.sleep(2)
    assert srv.ssh("version").returncode == 0


def test_openssh_asking_for_finite_field_dh_is_refused_its_default_works(srv):
    """The real ssh with only ``diffie-hellman-group16-sha512`` (65 ms of the server's CPU
    per key exchange) gets no key exchange; with its defaults it picks curve25519."""
    # (ssh says why at LogLevel INFO: "Unable to negotiate ...")
    command = [("LogLevel=INFO" if a == "LogLevel=ERROR" else a) for a in srv.ssh_command()]
    for kex in ("diffie-hellman-group16-sha512", "diffie-hellman-group18-sha512"):
        result = subprocess.run([*command, "-o", f"KexAlgorithms={kex}",
                                 "git@127.0.0.1", "version"],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 255, result
        assert "no matching key exchange method" in result.stderr, result.stderr
    result = subprocess.run([*command, "-v", "git@127.0.0.1", "version"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.startswith("gitpaas "), result.stderr
    assert "kex: algorithm: curve25519-sha256@libssh.org" in result.stderr


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.fixture
def unthrottled(tmp_path, redis_url, docker_client, clients):
    """A server without per-source limits: one source may hold many connections."""
    with serving(tmp_path, redis_url, docker_client, "f", {
            "GITPAAS_SSH_MAX_CONNECTIONS_PER_SOURCE": "1000",
            "GITPAAS_SSH_RATE_PER_SOURCE": "1000", "GITPAAS_SSH_BURST_PER_SOURCE": "1000",
            "GITPAAS_SSH_MAX_CONNECTIONS": "1000", "GITPAAS_SSH_MAX_STARTUPS": "0"}) as server:
        yield server


def test_ssh_comes_back_after_the_process_ran_out_of_file_descriptors(unthrottled):
    """Idle connections eat the process's last descriptors (HTTP is nginx's now, so they
    are SSH connections that never speak); SSH's accept fails with EMFILE meanwhile and
    must work again once they are gone."""
    srv = unthrottled
    pid = srv.proc.pid
    limit = open_fds(pid) + 30
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    old = resource.prlimit(pid, resource.RLIMIT_NOFILE, (limit, hard))
    idle: list[socket.socket] = []
    try:
        for _ in range(limit + 20):  # bounded: more than the process can hold
            idle.append(socket.create_connection(("127.0.0.1", srv.ssh_port), timeout=5))
        deadline = time.monotonic() + 20
        while open_fds(pid) < limit and time.monotonic() < deadline:
            time.sleep(0.1)
        assert open_fds(pid) >= limit - 1  # exhausted
        # An SSH client now waits in the listen queue: the accept fails with EMFILE.
        waiting = socket.create_connection(("127.0.0.1", srv.ssh_port), timeout=30)
        deadline = time.monotonic() + 20
        while "cannot accept connections" not in srv.log() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "Too many open files" in srv.log()
        assert srv.proc.poll() is None
    finally:
        for conn in idle:
            conn.close()
    # The load left: the waiting client gets its banner, and a real ssh session works.
    waiting.settimeout(30)
    assert waiting.recv(64).startswith(b"SSH-2.0-")
    waiting.close()
    result = srv.ssh("version", timeout=60)
    assert result.returncode == 0 and result.stdout.startswith("gitpaas "), result.stderr
    resource.prlimit(pid, resource.RLIMIT_NOFILE, old)
    assert "accepting connections again" in srv.log()


def strict_ssh(srv, known: Path) -> subprocess.CompletedProcess:
    """``ssh ... version`` that trusts only the host keys in ``known``."""
    return subprocess.run(
        ["ssh", "-p", str(srv.ssh_port), "-i", str(srv.admin_key), "-o", "IdentitiesOnly=yes",
         "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
         "-o", f"UserKnownHostsFile={known}", "-o", "UpdateHostKeys=no",
         "git@127.0.0.1", "version"], capture_output=True, text=True, timeout=60)


def test_openssh_clients_that_pinned_the_old_ecdsa_key_still_connect(tmp_path, redis_url,
                                                                     docker_client, clients):
    """An install upgraded from the ECDSA-only versions keeps its key (offered last): the
    real ssh, with only that key in known_hosts and strict checking, connects without a
    prompt; a client with the new Ed25519 key pinned connects too."""
    root = tmp_path / "upgraded"
    (root / "data").mkdir(parents=True)
    legacy = root / "data" / "ssh_host_ecdsa_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ecdsa", "-b", "256", "-N", "", "-f",
                    str(legacy)], check=True)
    with serving(root, redis_url, docker_client, prefix="sshe") as srv:
        for private in (legacy, srv.data_dir / "ssh_host_ed25519_key"):
            public = subprocess.run(["ssh-keygen", "-y", "-f", str(private)], check=True,
                                    capture_output=True, text=True).stdout.split()
            known = tmp_path / f"known_{private.name}"
            known.write_text(f"[127.0.0.1]:{srv.ssh_port} {public[0]} {public[1]}\n")
            result = strict_ssh(srv, known)
            assert result.returncode == 0, (public[0], result.stderr)
            assert result.stdout.startswith("gitpaas ")
        wrong = tmp_path / "known_wrong"  # and a key it does not hold is not accepted
        other = tmp_path / "other"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)],
                       check=True)
        kind, blob = Path(f"{other}.pub").read_text().split()[:2]
        wrong.write_text(f"[127.0.0.1]:{srv.ssh_port} {kind} {blob}\n")
        result = strict_ssh(srv, wrong)
        assert result.returncode != 0 and "IDENTIFICATION HAS CHANGED" in result.stderr
        assert legacy.exists()
