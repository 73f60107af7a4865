"""Fault injection at the edge: a replica killed under load costs no hung request."""

from __future__ import annotations

import http.client
import threading
import time

import pytest

from .routerkit import make_config, running_router, set_route

pytestmark = pytest.mark.timeout(300)
HOST = "replicas.example.com"


class Load(threading.Thread):
    """Bounded GET loop through the edge: at most ``limit`` requests or ``seconds``."""

    def __init__(self, port: int, host: str, seconds: float = 10.0, limit: int = 3000) -> None:
        super().__init__(daemon=True)
        self.port, self.host, self.seconds, self.limit = port, host, seconds, limit
        self.stop = threading.Event()
        self.ok = 0
        self.failures: list[str] = []
        self.slowest = 0.0

    def run(self) -> None:
        deadline = time.monotonic() + self.seconds
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        n = 0
        while not self.stop.is_set() and time.monotonic() < deadline and n < self.limit:
            n += 1
            began = time.monotonic()
            try:
                conn.request("GET", "/", headers={"Host": self.host})
                resp = conn.getresponse()
                resp.read()
                if resp.status == 200:
                    self.ok += 1
                else:
                    self.failures.append(str(resp.status))
            except (OSError, http.client.HTTPException) as exc:
                self.failures.append(repr(exc))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            self.slowest = max(self.slowest, time.monotonic() - began)
        conn.close()


def _replica(docker_client, image: str, name: str):
    container = docker_client.containers.run(
        image, ["sh", "-c", "echo ok > /tmp/index.html && exec httpd -f -p 5000 -h /tmp"],
        name=name, detach=True, ports={"5000/tcp": ("127.0.0.1", None)},
        labels={"gitpaas.test": name})
    deadline = time.monotonic() + 30
    while True:
        container.reload()
        binding = container.attrs["NetworkSettings"]["Ports"].get("5000/tcp")
        if binding:
            port = int(binding[0]["HostPort"])
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/")
                if conn.getresponse().status == 200:
                    return container, f"http://127.0.0.1:{port}"
            except (OSError, http.client.HTTPException):
                pass
        assert time.monotonic() < deadline, "replica did not start"
        time.sleep(0.2)


def test_docker_kill_of_one_replica_costs_no_hung_request(redis_url, instance, docker_client,
                                                          busybox_image):
    started = []
    try:
        for i in (1, 2):
            started.append(_replica(docker_client, busybox_image, f"{instance}-replica{i}"))
        with running_router(make_config(redis_url, instance)) as edge:
            set_route(redis_url, instance, HOST, *(url for _, url in started))
            loads = [Load(edge.port, HOST, seconds=6) for _ in range(4)]
            for load in loads:
                load.start()
            time.sleep(1.5)
            started[0][0].kill()
            for load in loads:
                load.join(30)
            # A response the replica was in the middle of sending when it was killed is
            # cut short (its status line already went to the client: no proxy can retry
            # it); nothing else may fail: no 5xx, no connection closed without an answer.
            for load in loads:
                cut = [f for f in load.failures if f.startswith("IncompleteRead(")]
                assert len(cut) <= 1 and len(load.failures) == len(cut), load.failures
            assert sum(load.ok for load in loads) > 100
            assert max(load.slowest for load in loads) < 3.0
    finally:
        for container, _ in started:
            container.remove(force=True)
