"""The logs service: an app's recent lines and a follower of new ones.

Lines of removed containers (earlier releases) come from the log archive (see
``applogs``); a ``Follower`` follows Docker's log stream of each container, and Docker's
events for containers that start meanwhile, until it is closed.
"""

from __future__ import annotations

import logging
import queue
import threading

from ..applogs import LogLine, epoch_seconds, matches, merge, parse_docker
from ..errors import GitPaasError
from ..runtime import ContainerInfo, DockerRuntime
from ..runtime.docker import Follow
from .access import Service

CLOSED_CHECK_SECONDS = 0.5  # how often a follower's reader and writer notice a close
QUEUE_LINES = 10_000  # lines read from Docker, not yet taken by the reader
log = logging.getLogger(__name__)


def source(info: ContainerInfo) -> str:
    return f"{info.process}.{info.replica}"


def live_lines(runtime: DockerRuntime, containers: list[ContainerInfo], process: str | None,
               tail: int | None = None, since: int | None = None) -> dict[str, list[LogLine]]:
    """The timestamped lines of each selected container, by container id."""
    return {c.id: parse_docker(runtime.timed_logs(c.id, tail=tail, since=since), source(c))
            for c in containers if matches(source(c), process)}


class Logs(Service):
    """What a key reads of its apps' logs (access checked first)."""

    def recent(self, name: str, process: str | None, limit: int
               ) -> tuple[list[LogLine], dict[str, str]]:
        """The last ``limit`` lines of the app (archive and live containers, by time), and
        the time of the last line shown of each container (where a follow starts)."""
        app = self.access.app(name)
        runtime = self.platform.runtime
        live = live_lines(runtime, runtime.list(app.name), process, tail=limit)
        kept = [li for li in self.platform.log_archive.read(app.name)
                if matches(li.source, process)]
        marks = {cid: lines[-1].time for cid, lines in live.items() if lines}
        return merge([kept, *live.values()], limit), marks

    def follower(self, name: str, process: str | None, last: dict[str, str],
                 since: float) -> Follower:
        """A started ``Follower`` of the app's new lines (close it when done)."""
        app = self.access.app(name)
        follower = Follower(self.platform.runtime, app.name, process, last, since)
        follower.start()
        return follower


class Follower:
    """One thread per container following its log stream, one following Docker's
    container starts; their lines meet in ``lines``."""

    def __init__(self, runtime: DockerRuntime, app: str, process: str | None,
                 last: dict[str, str], since: float) -> None:
        self.runtime = runtime
        self.app = app
        self.process = process
        self.last = last  # container id -> time of the last line shown
        self.since = int(since) - 1  # containers without a shown line: from here on
        self.lines: queue.Queue[LogLine] = queue.Queue(QUEUE_LINES)
        self._lock = threading.Lock()
        self._streams: dict[str, Follow[str]] = {}  # followed container id -> its stream
        self._restarted: set[str] = set()  # started again before its old stream ended
        self._starts: Follow[str] | None = None
        self._closed = False

    def start(self) -> None:
        # Starts first, then the listing: a container starting in between is in one or both.
        self._starts = self.runtime.follow_starts(self.app, self.since)
        threading.Thread(target=self._watch_starts, args=(self._starts,), daemon=True,
                         name=f"logs-starts-{self.app}").start()
        self._follow_new()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            streams = [*self._streams.values(), *([self._starts] if self._starts else [])]
        for follow in streams:
            follow.close()

    def _watch_starts(self, starts: Follow[str]) -> None:
        try:
            for container_id in starts:
                with self._lock:
                    if container_id in self._streams:
                        self._restarted.add(container_id)
                self._follow_new()
        except Exception:  # noqa: BLE001 - the event stream closed or broke
            log.debug("logs: the start events of %s ended", self.app, exc_info=True)

    def _follow_new(self) -> None:
        """Follow each of the app's containers (gitpaas's own: ``list``) not yet followed."""
        for info in self.runtime.list(self.app):
            if not matches(source(info), self.process):
                continue
            with self._lock:
                if self._closed or info.id in self._streams:
                    continue
                seen = self.last.get(info.id)
                since = epoch_seconds(seen) if seen else self.since
                try:
                    follow = self.runtime.follow_logs(info.id, max(since, 1), timestamps=True)
                except GitPaasError:
                    continue  # removed meanwhile
                self._streams[info.id] = follow
            threading.Thread(target=self._follow, args=(info, follow), daemon=True,
                             name=f"logs-{info.name}").start()

    def _follow(self, info: ContainerInfo, follow: Follow[str]) -> None:
        try:
            for text in follow:
                for line in parse_docker(text, source(info)):
                    seen = self.last.get(info.id)
                    if seen is not None and line.time <= seen:
                        continue  # shown already
                    self.last[info.id] = line.time
                    self._put(line)
        except Exception:  # noqa: BLE001 - the container went away or the stream closed
            log.debug("logs: following %s ended", info.name, exc_info=True)
        with self._lock:
            self._streams.pop(info.id, None)
            again = info.id in self._restarted
            self._restarted.discard(info.id)
        if again:  # it started again before this stream ended
            self._follow_new()

    def _put(self, line: LogLine) -> None:
        """Wait for room (a slow client slows the reading of Docker's stream)."""
        while not self._closed:
            try:
                self.lines.put(line, timeout=CLOSED_CHECK_SECONDS)
                return
            except queue.Full:
                continue
