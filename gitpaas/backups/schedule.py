"""Scheduled backups inside ``gitpaas serve``: one every ``backup_schedule``.

A failed attempt is retried after at most an hour (it was notified already).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from ..errors import GitPaasError

if TYPE_CHECKING:
    from ..platform import Platform
    from ..settings import Settings
    from ..store import Store

log = logging.getLogger(__name__)
RETRY = 3600.0


def due(settings: Settings, store: Store, now: float | None = None) -> bool:
    """Whether a scheduled backup should run now."""
    interval = settings.backup_interval
    if not interval:
        return False
    last = store.last_backup()
    if last is None:
        return True
    wait = min(interval, RETRY) if last.status == "failed" else interval
    return (time.time() if now is None else now) - last.finished_at >= wait


def loop(platform: Platform, stop: threading.Event, tick: float) -> None:
    """Check every ``tick`` seconds whether a backup is due; run it if so."""
    from . import create_backup

    while not stop.wait(tick):
        try:
            if due(platform.settings, platform.store):
                snapshot = create_backup(platform, log.info, actor="schedule")
                log.info("scheduled backup: snapshot %s", snapshot[:8])
        except GitPaasError as exc:
            log.warning("scheduled backup failed: %s", exc.message)
        except Exception:  # noqa: BLE001 - the loop must outlive one bad attempt
            log.exception("scheduled backup failed")


def start_in_thread(platform: Platform) -> threading.Event:
    """The schedule's thread (nothing when backups are off); set the event to stop it."""
    stop = threading.Event()
    interval = platform.settings.backup_interval
    if interval:
        tick = max(1.0, min(60.0, interval / 10))
        threading.Thread(target=loop, args=(platform, stop, tick), daemon=True,
                         name="backups").start()
    return stop
