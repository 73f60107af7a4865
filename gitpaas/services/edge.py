"""The edge settings service: an app's settings at the edge (nginx), Dokku-like.

Stored in the store (``gp_edge``) and mirrored into Redis (``<prefix>edge:<app>``,
``edge.appsettings.publish``), where the edge reads them with the app's frontend: a change
applies without an nginx reload. Changes run under the app's lock and are recorded.
"""

from __future__ import annotations

from ..edge.appsettings import publish
from ..edge.config import parse_size
from ..errors import InvalidInput
from ..settings import Settings
from .access import Service

TIMEOUTS = ("proxy-read-timeout", "proxy-send-timeout", "proxy-connect-timeout")
KNOWN = ("client-max-body-size", *TIMEOUTS, "https-redirect")


def checked(settings: Settings, name: str, value: str) -> str:
    """The stored form of ``value`` (bytes, seconds, true/false); InvalidInput if bad."""
    if name == "client-max-body-size":
        size = parse_size(value)
        ceiling = parse_size(settings.edge_max_body_size)
        if size > ceiling or size == 0:
            raise InvalidInput(f"client-max-body-size must be between 1 and "
                               f"{settings.edge_max_body_size}")
        return str(size)
    if name in TIMEOUTS:
        try:
            seconds = float(value.removesuffix("s"))
        except ValueError:
            raise InvalidInput(f"{name} must be a number of seconds") from None
        if not 1 <= seconds <= 3600:
            raise InvalidInput(f"{name} must be between 1 and 3600 seconds")
        return f"{seconds:g}"
    if value.lower() not in ("true", "false"):
        raise InvalidInput("https-redirect must be true or false")
    return value.lower()


def defaults(settings: Settings) -> dict[str, str]:
    """What an app gets of each setting it did not set (the install's settings)."""
    return {"client-max-body-size": str(parse_size(settings.edge_client_max_body_size)),
            "proxy-read-timeout": f"{settings.router_backend_timeout:g}",
            "proxy-send-timeout": f"{settings.router_backend_timeout:g}",
            "proxy-connect-timeout": f"{settings.router_connect_timeout:g}",
            "https-redirect": "true" if settings.router_https_redirect else "false"}


class EdgeSettings(Service):
    """What a key reads and sets of its apps' edge settings (access checked first)."""

    def show(self, name: str) -> tuple[dict[str, str], dict[str, str]]:
        """The app's own settings, and the defaults."""
        app = self.access.app(name)
        return self.platform.store.edge_settings(app.name), defaults(self.platform.settings)

    def set(self, name: str, pairs: list[tuple[str, str]]) -> None:
        """Set each ``(KEY, VALUE)`` at once (an empty VALUE resets KEY to the default)."""
        with self.access.change(name, "edge:set") as change:
            values: dict[str, str] = {}
            unset: list[str] = []
            for key, value in pairs:
                if key not in KNOWN:
                    raise InvalidInput(f"unknown edge setting {key!r} (known:"
                                       f" {', '.join(KNOWN)})")
                if value == "":
                    unset.append(key)
                else:
                    values[key] = checked(self.platform.settings, key, value)
            self.platform.store.set_edge_settings(change.app.name, values, unset)
            publish(self.platform, change.app.name)
            change.detail = (" ".join(f"{k}={v}" for k, v in values.items())
                             + "".join(f" {k}=" for k in unset))
