"""Per-app edge settings: the store is the truth, Redis the copy the edge reads."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..platform import Platform


def publish(platform: Platform, app: str) -> None:
    """Mirror the app's stored edge settings (``edge:set``) into ``<prefix>edge:<app>`` and
    announce its hosts, so the edge re-reads them without a reload."""
    stored = platform.store.edge_settings(app)
    platform.routes.set_edge_settings(app, {k.replace("-", "_"): v for k, v in stored.items()},
                                      platform.hosts(app))
