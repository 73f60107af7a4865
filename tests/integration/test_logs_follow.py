"""``logs -t`` follows Docker's log stream (issue 13): lines arrive as the container writes
them, containers that start (or restart) while it follows are followed too, and leaving
ends it."""

from __future__ import annotations

import io
import threading
import time

import pytest

from gitpaas import settings as settings_mod
from gitpaas.cli import LOCAL_ADMIN
from gitpaas.commands.registry import Context, run_command
from gitpaas.platform import Platform
from tests.harness import wait_for

pytestmark = pytest.mark.timeout(180)
# one line every 0.4 s: a poll once a second would deliver them two or three at a time
TICKER = "i=0; while true; do echo {word} $i; i=$((i+1)); sleep 0.4; done"


@pytest.fixture
def platform(tmp_path, instance, docker_client, busybox_image):
    p = Platform(settings_mod.load({
        "data_dir": tmp_path / "data", "instance": instance, "redis_url":
        "redis://127.0.0.1:6379/15", "stop_timeout": 1, "default_memory": ""}, environ={}))
    p.__dict__["docker"] = docker_client
    p.store.create_app("shop", "admin", "main")
    yield p
    for c in docker_client.containers.list(all=True,
                                           filters={"label": f"gitpaas.instance={instance}"}):
        c.remove(force=True)
    p.routes.close()


class Client:
    """A ``logs -t`` run on its own thread; each line with the time it arrived."""

    def __init__(self, platform: Platform, *args: str) -> None:
        self.received: list[tuple[float, str]] = []
        self.left = threading.Event()
        buffer = ""

        def write(text: str) -> None:
            nonlocal buffer
            buffer += text
            *lines, buffer = buffer.split("\n")
            self.received.extend((time.monotonic(), line) for line in lines)

        ctx = Context(platform, LOCAL_ADMIN, io.BytesIO(), write, lambda _: None,
                      closed=self.left.is_set)
        self.thread = threading.Thread(target=run_command, args=(ctx, ["logs", *args]),
                                       daemon=True)
        self.thread.start()

    def lines(self, prefix: str) -> list[tuple[float, str]]:
        return [(t, line) for t, line in self.received if line.startswith(prefix)]


def test_logs_tail_follows_the_stream_and_new_containers(platform, busybox_image,
                                                         docker_client):
    runtime = platform.runtime
    first = runtime.start("shop", 1, busybox_image, "worker", 1, {},
                          TICKER.format(word="tick"))
    assert wait_for(lambda: "tick 1" in runtime.timed_logs(first.id))
    client = Client(platform, "shop", "-t", "-n", "1")
    try:
        assert wait_for(lambda: len(client.lines("worker.1 | tick")) >= 8, timeout=30)
        ticks = client.lines("worker.1 | tick")
        numbers = [int(line.rsplit(" ", 1)[1]) for _, line in ticks]
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))  # none lost
        # streamed: each line on its own, about 0.4 s after the one before
        gaps = [b[0] - a[0] for a, b in zip(ticks[1:], ticks[2:], strict=False)]
        assert sum(gap < 0.1 for gap in gaps) <= 1, gaps
        # a container that starts while logs -t runs is followed from its first line
        runtime.start("shop", 1, busybox_image, "worker", 2, {}, TICKER.format(word="tock"))
        assert wait_for(lambda: len(client.lines("worker.2 | tock")) >= 2, timeout=30)
        assert client.lines("worker.2 | tock")[0][1] == "worker.2 | tock 0"
        # and one that restarts (its stream ended) is followed again
        docker_client.containers.get(first.id).restart(timeout=1)
        assert wait_for(lambda: client.lines("worker.1 | tick 0"), timeout=30)
    finally:
        client.left.set()
    client.thread.join(5)
    assert not client.thread.is_alive()  # leaving ends the command
    assert wait_for(lambda: not [t for t in threading.enumerate()
                                 if t.name.startswith("logs-")], timeout=5)
