"""Issue 7, point 15: 20 concurrent pushes to 20 apps, then 200 concurrent SSH command
sessions; all succeed and the server's memory stays bounded."""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.e2e.test_push import httpd_app
from tests.harness import make_repo
from tests.load.conftest import report, size

pytestmark = pytest.mark.timeout(3600)
PUSHES = size(20, 3, "GITPAAS_LOAD_PUSHES")
SESSIONS = size(200, 20, "GITPAAS_LOAD_SESSIONS")
RSS_LIMIT_MIB = 600


def rss_mib(pid: int) -> dict[str, float]:
    """Current (VmRSS) and peak (VmHWM) resident memory of ``pid``, in MiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = round(int(value.split()[0]) / 1024, 1)
    return fields


def test_concurrent_pushes_and_ssh_sessions(server, busybox_image, tmp_path):
    pid = server.proc.pid
    at_start = rss_mib(pid)
    apps = [f"load{i}" for i in range(PUSHES)]
    repos = {a: make_repo(tmp_path / a, httpd_app(busybox_image, f"{a}\n")) for a in apps}

    def push(app: str) -> tuple[str, int, float, str]:
        t0 = time.monotonic()
        result = server.push(repos[app], app)
        return app, result.returncode, time.monotonic() - t0, result.stderr[-500:]

    began = time.monotonic()
    with ThreadPoolExecutor(PUSHES) as pool:
        pushes = list(pool.map(push, apps))
    push_seconds = time.monotonic() - began
    after_pushes = rss_mib(pid)
    failed = [(a, err) for a, code, _, err in pushes if code != 0]
    assert failed == [], failed[:3]
    for app in apps:
        assert server.get(server.host(app)) == (200, f"{app}\n")

    commands = [["version"], ["apps"], ["ps", apps[0]], ["config", apps[-1]]]

    def session(i: int) -> tuple[int, float, str]:
        t0 = time.monotonic()
        result = server.ssh(*commands[i % len(commands)], timeout=300)
        return result.returncode, time.monotonic() - t0, result.stderr[-300:]

    began = time.monotonic()
    with ThreadPoolExecutor(SESSIONS) as pool:
        sessions = list(pool.map(session, range(SESSIONS)))
    session_seconds = time.monotonic() - began
    at_end = rss_mib(pid)
    bad = [(code, err) for code, _, err in sessions if code != 0]
    figures = {
        "pushes": PUSHES, "pushes_failed": len(failed),
        "push_wall_seconds": round(push_seconds, 1),
        "push_seconds_median": round(statistics.median(p[2] for p in pushes), 2),
        "push_seconds_max": round(max(p[2] for p in pushes), 2),
        "ssh_sessions": SESSIONS, "ssh_sessions_failed": len(bad),
        "ssh_wall_seconds": round(session_seconds, 1),
        "ssh_seconds_median": round(statistics.median(s[1] for s in sessions), 2),
        "ssh_seconds_max": round(max(s[1] for s in sessions), 2),
        "server_rss_mib": {"start": at_start, "after_pushes": after_pushes, "end": at_end},
    }
    report("concurrency", figures)
    assert bad == [], bad[:3]
    assert at_end["VmHWM"] < RSS_LIMIT_MIB, figures["server_rss_mib"]
