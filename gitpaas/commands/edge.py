"""edge, edge:set: an app's settings at the edge (nginx), Dokku-like.

Stored in the store (``gp_edge``) and mirrored into Redis (``<prefix>edge:<app>``), where
the edge reads them with the app's frontend: a change applies without an nginx reload.
"""

from __future__ import annotations

from ..edge.appsettings import publish
from ..edge.config import parse_size
from ..errors import InvalidInput
from ..services.access import Access
from .args import PAIR_RE, key_values
from .registry import Context, command
from .spec import APP, Arg, Flag, Parsed

TIMEOUTS = ("proxy-read-timeout", "proxy-send-timeout", "proxy-connect-timeout")
KNOWN = ("client-max-body-size", *TIMEOUTS, "https-redirect")


def _check(ctx: Context, name: str, value: str) -> str:
    """The stored form of ``value`` (bytes, seconds, true/false); InvalidInput if bad."""
    if name == "client-max-body-size":
        size = parse_size(value)
        ceiling = parse_size(ctx.platform.settings.edge_max_body_size)
        if size > ceiling or size == 0:
            raise InvalidInput(f"client-max-body-size must be between 1 and "
                               f"{ctx.platform.settings.edge_max_body_size}")
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


@command("edge", Flag("--json"), app=APP)
def edge_show(ctx: Context, p: Parsed) -> None:
    """Show the app's edge settings (body size limit, proxy timeouts, https redirect)."""
    as_json = p.flag("--json")
    app = p.the_app
    stored = ctx.platform.store.edge_settings(app.name)
    settings = ctx.platform.settings
    defaults = {"client-max-body-size": str(parse_size(settings.edge_client_max_body_size)),
                "proxy-read-timeout": f"{settings.router_backend_timeout:g}",
                "proxy-send-timeout": f"{settings.router_backend_timeout:g}",
                "proxy-connect-timeout": f"{settings.router_connect_timeout:g}",
                "https-redirect": "true" if settings.router_https_redirect else "false"}
    if as_json:
        ctx.json({"settings": stored, "defaults": defaults})
        return
    ctx.out(f"=== {app.name} Edge")
    for name in KNOWN:
        value = stored.get(name)
        ctx.out(f"{name}: {value}" if value is not None else f"{name}: {defaults[name]} (default)")


@command("edge:set", Arg("KEY=VALUE", many=True, pattern=PAIR_RE), app=APP)
def edge_set(ctx: Context, p: Parsed) -> None:
    """Set the app's edge settings at once, without a reload (KEY= resets one).

    Keys: client-max-body-size=64m, proxy-read-timeout=120, proxy-send-timeout,
    proxy-connect-timeout (seconds), https-redirect=true."""
    app = p.the_app
    values: dict[str, str] = {}
    unset: list[str] = []
    for name, value in key_values(p.many("KEY=VALUE")):
        if name not in KNOWN:
            raise InvalidInput(f"unknown edge setting {name!r} (known: {', '.join(KNOWN)})")
        if value == "":
            unset.append(name)
        else:
            values[name] = _check(ctx, name, value)
    platform = ctx.platform
    with Access(platform, ctx.key, ctx.err).change(app.name, "edge:set") as change:
        platform.store.set_edge_settings(app.name, values, unset)
        publish(platform, app.name)
        change.detail = (" ".join(f"{k}={v}" for k, v in values.items())
                         + "".join(f" {k}=" for k in unset))
    ctx.out(f"-----> Edge settings of {app.name} updated")
