"""Datastores attached to apps (MySQL). See ``mysql.py``."""

from __future__ import annotations

from typing import Any


def destroy_for_app(platform: Any, app: str) -> None:
    """Remove every datastore of ``app`` (called by ``apps:destroy``)."""
    return None
