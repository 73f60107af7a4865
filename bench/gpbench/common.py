"""What every benchmark part shares: a throwaway ``gitpaas serve``, the busybox image,
statistics, the table, time limits and cleanup."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import statistics
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.harness import Server  # noqa: E402

REDIS_URL = os.environ.get("GITPAAS_BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
CACHE_DIR = Path(tempfile.gettempdir()) / "gitpaas-bench-cache"


class PartTimeout(Exception):
    """A part ran out of its time budget."""


@contextlib.contextmanager
def time_limit(seconds: int, what: str) -> Iterator[None]:
    """Raise ``PartTimeout`` in the main thread after ``seconds`` (cleanup still runs)."""
    def expire(signum: int, frame: object) -> None:
        raise PartTimeout(f"{what} ran out of its {seconds} s budget")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# -- figures ------------------------------------------------------------------------------

def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1), nearest rank."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


@dataclass
class Row:
    """One line of the table: a figure, its baseline, the ratio and the target."""

    part: str
    what: str
    value: str
    baseline: str = ""
    ratio: float | None = None
    target: str = ""
    ok: bool | None = None


@dataclass
class Table:
    rows: list[Row] = field(default_factory=list)

    def add(self, *args: object, **kwargs: object) -> None:
        self.rows.append(Row(*args, **kwargs))  # type: ignore[arg-type]

    def render(self) -> str:
        head = ("part", "figure", "value", "baseline", "ratio", "target", "ok")
        lines = [[r.part, r.what, r.value, r.baseline,
                  "" if r.ratio is None else f"{r.ratio:.2f}x", r.target,
                  "" if r.ok is None else ("yes" if r.ok else "NO")] for r in self.rows]
        widths = [max(len(str(x)) for x in col) for col in zip(head, *lines, strict=False)]
        fmt = "  ".join(f"{{:{'<' if i < 2 else '>'}{w}}}" for i, w in enumerate(widths))
        out = [fmt.format(*head), fmt.format(*("-" * w for w in widths))]
        out += [fmt.format(*line) for line in lines]
        return "\n".join(out)


def secs(value: float) -> str:
    return f"{value:.3f} s"


# -- the platform under test --------------------------------------------------------------

def docker_client():  # noqa: ANN201 - docker is imported lazily
    import docker

    return docker.from_env(timeout=300)


def busybox_image(client) -> str:  # noqa: ANN001
    """A local busybox image (made like tests/conftest.py's); the caller removes it."""
    from tests.conftest import busybox_tar

    name = f"gitpaas-bench-{secrets.token_hex(3)}/busybox:latest"
    repo, tag = name.rsplit(":", 1)
    client.api.import_image_from_data(busybox_tar(), repository=repo, tag=tag)
    return name


def remove_image(client, name: str) -> None:  # noqa: ANN001
    """Remove a busybox image of ``busybox_image`` and every image built on it."""
    from tests.harness import remove_image_tree

    remove_image_tree(client, name)


def drop_redis_keys(prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            client.delete(key)
    finally:
        client.close()


@contextlib.contextmanager
def platform(tmp: Path, client, **env: str) -> Iterator[Server]:  # noqa: ANN001
    """A running ``gitpaas serve`` with an admin key; everything it made is removed after."""
    tmp.mkdir(parents=True, exist_ok=True)
    # the bench's local busybox images (``busybox_image``) as FROM
    env = {"GITPAAS_BUILD_ALLOWED_IMAGES": "gitpaas-bench-*", **env}
    srv = Server(root=tmp, instance=f"bench{secrets.token_hex(3)}", redis_url=REDIS_URL,
                 extra_env=dict(env))
    try:
        srv.admin_key = srv.add_key("admin")
        srv.start()
        yield srv
    finally:
        keep = os.environ.get("GITPAAS_BENCH_KEEP_LOG")  # a path: the server's log goes there
        if keep:
            with contextlib.suppress(OSError):
                Path(keep).write_text(srv.log())
        try:
            cleanup(srv, client)
        finally:
            drop_redis_keys(f"{srv.instance}:")


def cleanup(srv: Server, client, attempts: int = 3) -> None:  # noqa: ANN001
    """``Server.cleanup``, tried again when another process removed an image while it
    listed them (Docker answers 404 for an image that vanished under the listing)."""
    import docker

    for attempt in range(attempts):
        try:
            srv.cleanup(client)
            return
        except docker.errors.NotFound:
            if attempt == attempts - 1:
                raise
            time.sleep(1)


TIMINGS_RE = re.compile(r"deploy timings (\S+) v(\d+): (.*)$")
RECEIVE_RE = re.compile(r"receive (\S+?)(?:\.git)?: ([\d.]+) s$")


def deploy_timings(log: str, app: str, version: int) -> dict[str, float]:
    """The stages of one deploy, from the ``deploy timings`` line of the server's log."""
    for line in reversed(log.splitlines()):
        m = TIMINGS_RE.search(line)
        if m and m.group(1) == app and int(m.group(2)) == version:
            return {k: float(v) for k, v in (p.split("=") for p in m.group(3).split())}
    return {}


PACK_RE = re.compile(r"pack stored in (\S+?)(?:\.git)?: (\d+) objects, (\d+) bytes, "
                     r"([\d.]+) s: waiting for the client ([\d.]+) s, for index-pack "
                     r"([\d.]+) s, after the last byte ([\d.]+) s$")


def pack_stages(log: str, app: str) -> list[dict[str, float]]:
    """The stages of every pack stored for ``app`` (``git/indexpack.py``'s log line):
    ``total``, ``client`` (waiting for bytes), ``index_pack`` (waiting for index-pack to
    take them), ``tail`` (index-pack after the last byte); the rest is the scan."""
    found = []
    for line in log.splitlines():
        m = PACK_RE.search(line)
        if m and m.group(1) == app:
            total, client, index, tail = (float(m.group(i)) for i in range(4, 8))
            found.append({"total": total, "client": client, "index_pack": index,
                          "tail": tail, "scan": max(0.0, total - client - index - tail)})
    return found


def receive_times(log: str, app: str) -> list[float]:
    """Every ``receive`` time logged for ``app``, oldest first."""
    found = []
    for line in log.splitlines():
        m = RECEIVE_RE.search(line)
        if m and m.group(1) == app:
            found.append(float(m.group(2)))
    return found


def wait_until(predicate: Callable[[], object], timeout: float, step: float = 0.005) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return False


def rss_mb(pid: int) -> float:
    """Resident memory of a process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def quote_url(text: str) -> str:
    return urllib.parse.quote(text)
