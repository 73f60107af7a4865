"""Notifications: a problem an operator must hear of becomes an event in the store and
runs the ``notify`` hooks (the shipped one posts it to ``webhook_url``).

Kinds: ``deploy-failed``, ``backup-failed``, ``crash-loop``, ``disk-full``,
``certificate-expiry``, ``backup-stale``, ``service-down``. Never raises: a notification
that cannot be delivered is logged.
"""

from __future__ import annotations

import logging
import socket
from typing import TYPE_CHECKING

from .errors import GitPaasError
from .hooks import run_platform_hooks

if TYPE_CHECKING:
    from .platform import Platform

log = logging.getLogger(__name__)


def notify(platform: Platform, kind: str, app: str | None, detail: str) -> None:
    """Record ``kind`` as an event and run the ``notify`` hooks with it."""
    log.warning("notification %s%s: %s", kind, f" ({app})" if app else "", detail)
    try:
        platform.store.record_event("gitpaas", kind, app, detail)
    except GitPaasError as exc:
        log.warning("cannot record the %s event: %s", kind, exc.message)
    settings = platform.settings
    payload = {"kind": kind, "app": app or "", "detail": detail,
               "instance": settings.instance, "host": socket.gethostname()}
    try:
        run_platform_hooks(settings, "notify", payload, log.info)
    except Exception:  # noqa: BLE001 - a notification must never break its caller
        log.exception("notify hooks failed for %s", kind)
