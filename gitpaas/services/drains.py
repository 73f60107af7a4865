"""The drains service: where an app's logs and events are forwarded (``gitpaas.drains``
does the forwarding). Changes run under the app's lock and are recorded."""

from __future__ import annotations

from typing import Any

from .. import drains
from ..errors import NotFound
from .access import Service


class Drains(Service):
    """What a key does to its apps' log drains (access checked first)."""

    def list(self, name: str) -> list[dict[str, Any]]:
        """The app's drains: ``{url, created_by, created_at}``, the URL as stored."""
        app = self.access.app(name)
        return self.platform.store.drains(app.name)

    def add(self, name: str, url: str) -> None:
        """Forward the app's lines and events to ``url`` (checked: ``drains.parse_url``;
        a private address is for admins only)."""
        with self.access.change(name, "drains:add") as change:
            drains.parse_url(url, self.key.is_admin)
            self.platform.store.add_drain(change.app.name, url, self.key.is_admin,
                                          self.key.name)
            change.detail = drains.public_url(url)

    def remove(self, name: str, url: str) -> None:
        """Stop forwarding the app's lines to ``url``."""
        with self.access.change(name, "drains:remove") as change:
            if not self.platform.store.remove_drain(change.app.name, url):
                raise NotFound(f"{change.app.name} has no drain {drains.public_url(url)}")
            change.detail = drains.public_url(url)
