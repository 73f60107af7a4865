"""Issue 7, point 14: no failed request while a two-replica app is deployed N times and
reconfigured N times, under load through the router (keep-alive and not)."""

from __future__ import annotations

import http.client
import statistics
import threading
import time

import pytest

from tests.e2e.test_push import httpd_app
from tests.harness import commit_files, make_repo
from tests.load.conftest import report, size

pytestmark = pytest.mark.timeout(3600)
N = size(50, 3, "GITPAAS_LOAD_N")
CLIENTS = 4  # half keep-alive, half a new connection per request


class Client(threading.Thread):
    def __init__(self, port: int, host: str, keep_alive: bool) -> None:
        super().__init__(daemon=True)
        self.port, self.host, self.keep_alive = port, host, keep_alive
        self.stop = threading.Event()
        self.statuses: dict[int, int] = {}
        self.errors: list[str] = []
        self.latencies: list[float] = []

    def run(self) -> None:
        conn = None
        while not self.stop.is_set():
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            began = time.monotonic()
            try:
                conn.request("GET", "/", headers={"Host": self.host})
                resp = conn.getresponse()
                resp.read()
                self.statuses[resp.status] = self.statuses.get(resp.status, 0) + 1
                self.latencies.append(time.monotonic() - began)
            except (OSError, http.client.HTTPException) as exc:
                self.errors.append(repr(exc))
                conn.close()
                conn = None
                continue
            if not self.keep_alive or resp.will_close:
                conn.close()
                conn = None
        if conn is not None:
            conn.close()


def test_zero_downtime_deploys_and_config_changes(server, busybox_image, tmp_path):
    app = "zdt"
    repo = make_repo(tmp_path / app, httpd_app(busybox_image, "v0\n"))
    assert server.push(repo, app).returncode == 0
    scaled = server.ssh("ps:scale", app, "web=2")
    assert scaled.returncode == 0, scaled.stderr
    clients = [Client(server.http_port, server.host(app), keep_alive=i % 2 == 0)
               for i in range(CLIENTS)]
    for c in clients:
        c.start()
    deploy_times, config_times = [], []
    began = time.monotonic()
    try:
        for i in range(1, N + 1):
            commit_files(repo, {"index.html": f"v{i}\n"}, f"v{i}")
            t0 = time.monotonic()
            pushed = server.push(repo, app)
            deploy_times.append(time.monotonic() - t0)
            assert pushed.returncode == 0, pushed.stderr
        for i in range(1, N + 1):
            t0 = time.monotonic()
            changed = server.ssh("config:set", app, f"ROUND={i}")
            config_times.append(time.monotonic() - t0)
            assert changed.returncode == 0, changed.stderr
        time.sleep(1.0)
    finally:
        for c in clients:
            c.stop.set()
        for c in clients:
            c.join(30)
    elapsed = time.monotonic() - began
    statuses: dict[int, int] = {}
    for c in clients:
        for status, count in c.statuses.items():
            statuses[status] = statuses.get(status, 0) + count
    errors = [e for c in clients for e in c.errors]
    latencies = sorted(x for c in clients for x in c.latencies)
    total = sum(statuses.values())
    figures = {
        "deploys": N, "config_changes": N, "replicas": 2, "clients": CLIENTS,
        "requests": total + len(errors), "failed_requests": len(errors),
        "responses_5xx": sum(v for k, v in statuses.items() if k >= 500),
        # a 4xx (a 404 while a host has no frontend, a 429) is as failed as a 5xx
        "responses_not_2xx": sum(v for k, v in statuses.items() if not 200 <= k < 300),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "seconds": round(elapsed, 1), "requests_per_second": round(total / elapsed, 1),
        "latency_ms_p50": round(1000 * statistics.median(latencies), 2),
        "latency_ms_p99": round(1000 * latencies[int(0.99 * (len(latencies) - 1))], 2),
        "latency_ms_max": round(1000 * latencies[-1], 2),
        "deploy_seconds_median": round(statistics.median(deploy_times), 2),
        "config_set_seconds_median": round(statistics.median(config_times), 2),
    }
    report("zero_downtime", figures)
    assert errors == [], errors[:5]
    assert figures["responses_not_2xx"] == 0, statuses
    assert server.get(server.host(app)) == (200, f"v{N}\n")
