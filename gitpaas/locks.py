"""Per-app locks: a push, a config change, a scale and a rollback of one app queue here.

``flock`` on a file under the data dir: the kernel releases it when the holder dies, so a
lock left by a crashed process is recovered by itself. The file names the holder, and
its modification time says when the lock was last let go (``app_lock`` yields it).
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import Conflict


@contextmanager
def app_lock(locks_dir: Path, app: str, what: str, timeout: float,
             notify: Callable[[str], None] | None = None) -> Iterator[float]:
    """Hold the lock of ``app`` while ``what`` runs; wait at most ``timeout`` seconds.

    Yields when the lock was last released (the file's modification time; 0.0 for a new
    lock): nothing of the app changed under this lock since then. A holder that died
    without releasing it left the time it took the lock."""
    locks_dir.mkdir(parents=True, exist_ok=True)
    path = locks_dir / f"{app}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    held = False
    try:
        deadline = time.monotonic() + timeout
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = _holder(fd)
                if notify and not told:
                    notify(f"-----> Waiting for {app}: {holder or 'another operation'}")
                    told = True
                if time.monotonic() >= deadline:
                    raise Conflict(f"{app} is busy ({holder or 'another operation'});"
                                   f" gave up after {timeout:.0f}s, try again") from None
                time.sleep(0.1)
        held = True
        stat = os.fstat(fd)
        released = stat.st_mtime if stat.st_size else 0.0
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{what} (pid {os.getpid()})".encode(), 0)
        yield released
    finally:
        if held:
            os.utime(fd)  # the release time, for the next holder
        os.close(fd)  # releases the flock


def _holder(fd: int) -> str:
    try:
        return os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    except OSError:
        return ""
