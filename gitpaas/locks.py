"""Per-app locks: a push, a config change, a scale and a rollback of one app queue here.

``flock`` on a file under the data dir: the kernel releases it when the holder dies, so a
lock left by a crashed process is recovered by itself. The file names the holder.
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
             notify: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold the lock of ``app`` while ``what`` runs; wait at most ``timeout`` seconds."""
    locks_dir.mkdir(parents=True, exist_ok=True)
    path = locks_dir / f"{app}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
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
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{what} (pid {os.getpid()})".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the flock


def _holder(fd: int) -> str:
    try:
        return os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    except OSError:
        return ""
