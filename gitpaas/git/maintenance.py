"""Keeping app repos small and clean: partial packs removed, refused objects pruned.

- ``clean_partial``: what an unfinished receive leaves (dulwich's ``objects/tmp_pack_*``,
  a ``.pack`` without its ``.idx``, lock files). Called after every receive, whatever ended
  it, and for every repo at start-up (a SIGKILLed ``serve``). The caller holds the app's
  lock, so no receive is writing: no grace period is needed.
- ``gc``: ``git gc --prune=now`` (one pack; objects no ref reaches, such as those of refused
  pushes, dropped) run as ``nice -n 19 ionice -c 3`` with one pack thread, a memory window
  and a time limit, only for repos that have more than one pack or loose objects.
- ``Maintainer``: both for every app, skipping an app whose lock is taken (a push or a
  deploy in progress); ``gitpaas serve`` runs it at start-up and every
  ``repo_gc_interval`` seconds.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from pathlib import Path

from dulwich.errors import NotGitRepository
from dulwich.repo import Repo

from ..errors import Conflict

log = logging.getLogger(__name__)
# gc holds the app's lock (a push waits for it, at most lock_timeout): stopped after this.
GC_TIMEOUT = 120.0
# Half-made repos of an interrupted first push (see ``repos._create``).
NEW_REPO_PREFIX = ".new-"


def clean_partial(repo_path: str | os.PathLike[str]) -> list[str]:
    """Remove what an interrupted receive left in the bare repo; return the names removed.

    Hold the app's lock: a receive under way would lose its pack."""
    objects = Path(repo_path) / "objects"
    pack_dir = objects / "pack"
    removed = list(objects.glob("tmp_pack_*"))
    if pack_dir.is_dir():
        names = {p.name for p in pack_dir.iterdir()}
        removed += [p for p in pack_dir.iterdir() if _partial(p.name, names)]
    for path in removed:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("cannot remove %s: %s", path, exc)
    if removed:
        log.info("removed partial receive files: %s", ", ".join(str(p) for p in removed))
    return [p.name for p in removed]


def _partial(name: str, names: set[str]) -> bool:
    """A temporary or lock file, or a pack whose index was never written."""
    if name.startswith(("tmp_", ".tmp-")) or name.endswith(".lock"):
        return True
    return name.endswith(".pack") and f"{name[:-5]}.idx" not in names


def needs_gc(repo_path: str | os.PathLike[str]) -> bool:
    """Whether the repo holds more than one pack or any loose object."""
    objects = Path(repo_path) / "objects"
    packs = list((objects / "pack").glob("*.pack")) if (objects / "pack").is_dir() else []
    if len(packs) > 1:
        return True
    return any(d.is_dir() and len(d.name) == 2 and any(d.iterdir())
               for d in objects.iterdir()) if objects.is_dir() else False


def io_bounded(argv: list[str]) -> list[str]:
    """``argv`` at the lowest CPU priority and in the idle I/O class, where available."""
    prefix = []
    if shutil.which("nice"):
        prefix += ["nice", "-n", "19"]
    if shutil.which("ionice"):
        prefix += ["ionice", "-c", "3"]
    return prefix + argv


def gc(repo_path: str | os.PathLike[str], timeout: float = GC_TIMEOUT) -> bool:
    """Repack into one pack and prune unreachable objects (hold the app's lock).

    Returns False when there was nothing to do or git failed (logged, never raised)."""
    if not needs_gc(repo_path):
        return False
    git = shutil.which("git")
    if git is None:
        log.warning("git is not installed: app repos are not repacked")
        return False
    argv = io_bounded([git, "-C", str(repo_path), "-c", f"safe.directory={repo_path}",
                       "-c", "pack.threads=1",
                       "-c", "pack.windowMemory=64m", "-c", "gc.writeCommitGraph=false",
                       "-c", "gc.reflogExpire=now", "-c", "gc.reflogExpireUnreachable=now",
                       "gc", "--prune=now", "--quiet"])
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              check=False)
    except subprocess.TimeoutExpired:
        log.warning("git gc of %s took more than %.0fs: stopped", repo_path, timeout)
        return False
    if done.returncode != 0:
        log.warning("git gc of %s failed: %s", repo_path, done.stderr.strip()[-500:])
        return False
    return True


LockNow = Callable[[str, str], AbstractContextManager[object]]


class Maintainer:
    """Cleans and repacks the repos of the apps whose lock is free."""

    def __init__(self, repos_dir: Path, lock_now: LockNow,
                 apps: Callable[[], Iterable[str]]) -> None:
        self.repos_dir = repos_dir
        self.lock_now = lock_now
        self.apps = apps

    def start_up(self) -> None:
        """Before serving: remove half-made repos and partial packs of every app."""
        if self.repos_dir.is_dir():
            for aside in self.repos_dir.glob(NEW_REPO_PREFIX + "*"):
                shutil.rmtree(aside, ignore_errors=True)
        self.run_once(repack=False)

    def run_once(self, repack: bool = True) -> list[str]:
        """One pass over every app; returns the apps that were repacked."""
        repacked = []
        for app in sorted(self.apps()):
            path = self.repos_dir / f"{app}.git"
            try:
                with self.lock_now(app, "repo maintenance"):
                    Repo(str(path)).close()  # only real repos
                    clean_partial(path)
                    if repack and gc(path):
                        repacked.append(app)
            except (Conflict, NotGitRepository, FileNotFoundError):
                continue  # busy (its next receive cleans up), or no repo yet
            except Exception:  # noqa: BLE001 - one bad repo must not stop the others
                log.exception("maintenance of the repo of %s failed", app)
        return repacked

    def loop(self, stop: threading.Event, interval: float) -> None:
        """Every ``interval`` seconds until ``stop`` is set."""
        while not stop.wait(interval):
            started = time.monotonic()
            repacked = self.run_once()
            if repacked:
                log.info("repacked %s in %.1fs", ", ".join(repacked),
                         time.monotonic() - started)


def start_in_thread(maintainer: Maintainer, interval: float) -> threading.Event:
    """The start-up clean now, then the periodic pass on a daemon thread (0: none)."""
    maintainer.start_up()
    stop = threading.Event()
    if interval > 0:
        threading.Thread(target=maintainer.loop, args=(stop, interval), daemon=True,
                         name="repo-maintenance").start()
    return stop
