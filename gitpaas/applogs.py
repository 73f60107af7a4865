"""App logs: the live containers' lines merged with the kept tails of removed ones.

Docker forgets a container's log when the container is removed (every deploy retires the
previous release's containers), so ``DockerRuntime.remove`` hands the last lines to
``LogArchive.keep``, which appends them to ``<data_dir>/logs/<app>.log``, bounded in size.
A line there reads ``<timestamp> <process>.<replica> <text>``.
"""

from __future__ import annotations

import calendar
import fcntl
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .runtime import ContainerInfo

DEFAULT_MAX_BYTES = 512 * 1024
TIMESTAMP_RE = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?Z")


@dataclass(frozen=True, order=True)
class LogLine:
    """One line of an app's log; ``time`` is normalized RFC 3339 (sorts as text)."""

    time: str
    source: str
    text: str

    def render(self) -> str:
        """The line as users see it: ``web.1 | text``."""
        return f"{self.source} | {self.text}"


def normalize_timestamp(value: str) -> str | None:
    """Docker's RFC 3339 with up to 9 fraction digits -> exactly 9 digits, or None."""
    match = TIMESTAMP_RE.fullmatch(value)
    if not match:
        return None
    return f"{match.group(1)}.{(match.group(2) or '').ljust(9, '0')}Z"


def epoch_seconds(timestamp: str) -> int:
    """Whole seconds since the epoch of a normalized timestamp."""
    return calendar.timegm(time.strptime(timestamp[:19], "%Y-%m-%dT%H:%M:%S"))


def parse_docker(raw: str, source: str) -> list[LogLine]:
    """Parse ``docker logs --timestamps`` output of one container."""
    lines = []
    for raw_line in raw.splitlines():
        stamp, _, text = raw_line.partition(" ")
        normalized = normalize_timestamp(stamp)
        if normalized is None:
            continue
        lines.append(LogLine(normalized, source, text.rstrip("\r")))
    return lines


def parse_archive(raw: str) -> list[LogLine]:
    """Parse the lines of an archive file (``<timestamp> <source> <text>``)."""
    lines = []
    for raw_line in raw.splitlines():
        parts = raw_line.split(" ", 2)
        if len(parts) < 2 or normalize_timestamp(parts[0]) is None:
            continue
        lines.append(LogLine(parts[0], parts[1], parts[2] if len(parts) > 2 else ""))
    return lines


def format_archive(lines: Iterable[LogLine]) -> str:
    return "".join(f"{line.time} {line.source} {line.text}\n" for line in lines)


def merge(groups: Iterable[Iterable[LogLine]], limit: int | None = None) -> list[LogLine]:
    """All lines by time (stable for equal times); the last ``limit`` of them."""
    merged = sorted((line for group in groups for line in group), key=lambda li: li.time)
    return merged[-limit:] if limit else merged


def matches(source: str, process: str | None) -> bool:
    """Whether ``source`` (``web.1``) is selected by ``-p web`` or ``-p web.1``."""
    return process is None or source == process or source.split(".", 1)[0] == process


class LogArchive:
    """The kept log tails of removed containers, one bounded file per app."""

    def __init__(self, directory: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.directory = directory
        self.max_bytes = max_bytes

    def path(self, app: str) -> Path:
        return self.directory / f"{app}.log"

    def keep(self, container: ContainerInfo, raw: str) -> None:
        """Append a removed container's timestamped lines (``runtime.on_remove``)."""
        lines = parse_docker(raw, f"{container.process}.{container.replica}")
        if not lines or not container.app:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        data = format_archive(lines).encode("utf-8", "replace")
        fd = os.open(self.path(container.app), os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, data)
            size = os.fstat(fd).st_size
            if size > self.max_bytes:
                self._trim(fd, size)
        finally:
            os.close(fd)

    def _trim(self, fd: int, size: int) -> None:
        """Keep about the last half of the file, from a line boundary."""
        keep = self.max_bytes // 2
        tail = os.pread(fd, keep, size - keep)
        newline = tail.find(b"\n")
        tail = tail[newline + 1:] if newline >= 0 else b""
        os.ftruncate(fd, 0)
        os.write(fd, tail)

    def read(self, app: str) -> list[LogLine]:
        try:
            raw = self.path(app).read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return []
        return parse_archive(raw)

    def remove(self, app: str) -> None:
        self.path(app).unlink(missing_ok=True)
