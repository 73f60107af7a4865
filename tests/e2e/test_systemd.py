"""The systemd units (scripts/systemd/): they pass ``systemd-analyze verify``, their
ExecStart lines are what runs here, and restarting the control plane (what an upgrade
does) fails no request through the edge, which is its own unit."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
import redis

from tests.conftest import require, unique
from tests.e2e.test_push import httpd_app
from tests.harness import GITPAAS, Server, free_port, make_repo

pytestmark = pytest.mark.timeout(600)
UNITS = Path(__file__).resolve().parents[2] / "scripts" / "systemd"


def exec_start(unit: str) -> list[str]:
    """The unit's ExecStart as an argument list, run with this checkout's gitpaas."""
    lines = [x for x in (UNITS / unit).read_text().splitlines() if x.startswith("ExecStart=")]
    assert len(lines) == 1, unit
    argv = shlex.split(lines[0].removeprefix("ExecStart="))
    assert Path(argv[0]).name == "gitpaas" and Path(argv[0]).is_absolute(), argv
    return [GITPAAS, *argv[1:]]


def test_units_pass_systemd_analyze_verify(tmp_path):
    analyze = shutil.which("systemd-analyze")
    require(analyze is not None, "systemd-analyze (Debian package systemd)")
    units = sorted(UNITS.glob("*.service"))
    assert {u.name for u in units} == {"gitpaas.service", "gitpaas-router.service"}
    for unit in units:  # the installed program is /usr/local/bin/gitpaas (setup links it)
        text = unit.read_text().replace("/usr/local/bin/gitpaas", GITPAAS)
        assert "Restart=on-failure" in text and "[Install]" in text
        (tmp_path / unit.name).write_text(text)
    result = subprocess.run([analyze, "verify", *map(str, sorted(tmp_path.iterdir()))],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr
    bad = tmp_path / "broken.service"
    bad.write_text("[Service]\nExecStart=gitpaas serve\n")  # not absolute: refused
    assert subprocess.run([analyze, "verify", str(bad)], capture_output=True).returncode != 0


class Load(threading.Thread):
    """GETs through the edge until stopped; records every status and error."""

    def __init__(self, port: int, host: str) -> None:
        super().__init__(daemon=True)
        self.port, self.host = port, host
        self.stop = threading.Event()
        self.statuses: dict[int, int] = {}
        self.errors: list[str] = []

    def run(self) -> None:
        import http.client

        deadline = time.monotonic() + 120
        while not self.stop.is_set() and time.monotonic() < deadline:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            try:
                conn.request("GET", "/", headers={"Host": self.host})
                resp = conn.getresponse()
                resp.read()
                self.statuses[resp.status] = self.statuses.get(resp.status, 0) + 1
            except (OSError, http.client.HTTPException) as exc:
                self.errors.append(repr(exc))
            finally:
                conn.close()
            time.sleep(0.005)


def test_the_units_serve_and_a_control_plane_restart_fails_no_request(
        tmp_path, redis_url, docker_client, clients, busybox_image):
    srv = Server(root=tmp_path, instance=unique("u"), redis_url=redis_url,
                 command=exec_start("gitpaas.service"))
    srv.ssh_port, srv.http_port = free_port(), free_port()
    srv.admin_key = srv.add_key("admin")
    edge = subprocess.Popen(exec_start("gitpaas-router.service"), env=srv.env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        srv.start()
        repo = make_repo(tmp_path / "up", httpd_app(busybox_image, "up\n"))
        assert srv.push(repo, "up").returncode == 0
        assert srv.get(srv.host("up")) == (200, "up\n")
        load = Load(srv.http_port, srv.host("up"))
        load.start()
        time.sleep(0.5)
        srv.stop()  # systemctl restart gitpaas: SIGTERM, then ExecStart again
        time.sleep(1.0)
        srv.start()
        assert srv.ssh("config:set", "up", "AFTER=restart").returncode == 0
        time.sleep(0.5)
        load.stop.set()
        load.join(30)
        assert load.errors == [] and set(load.statuses) == {200}, (load.errors, load.statuses)
        assert sum(load.statuses.values()) > 20
    finally:
        edge.terminate()
        edge.wait(10)
        srv.cleanup(docker_client)
        client = redis.Redis.from_url(redis_url)
        for key in client.scan_iter(match=f"{srv.instance}:*", count=1000):
            client.delete(key)
        client.close()
