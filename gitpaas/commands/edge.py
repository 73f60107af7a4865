"""edge, edge:set: an app's settings at the edge (nginx), Dokku-like (the doing:
``services.edge``: stored, and mirrored into Redis where the edge reads them, so a change
applies without an nginx reload)."""

from __future__ import annotations

from ..services.edge import KNOWN, EdgeSettings
from .args import PAIR_RE, key_values
from .registry import Context, command
from .spec import APP, Arg, Flag, Parsed


@command("edge", Flag("--json"), app=APP)
def edge_show(ctx: Context, p: Parsed) -> None:
    """Show the app's edge settings (body size limit, proxy timeouts, https redirect)."""
    name = p.the_app.name
    stored, defaults = EdgeSettings(ctx.platform, ctx.key).show(name)
    if ctx.json_or_title(p, {"settings": stored, "defaults": defaults}, f"{name} Edge"):
        return
    for key in KNOWN:
        value = stored.get(key)
        ctx.out(f"{key}: {value}" if value is not None else f"{key}: {defaults[key]} (default)")


@command("edge:set", Arg("KEY=VALUE", many=True, pattern=PAIR_RE), app=APP)
def edge_set(ctx: Context, p: Parsed) -> None:
    """Set the app's edge settings at once, without a reload (KEY= resets one).

    Keys: client-max-body-size=64m, proxy-read-timeout=120, proxy-send-timeout,
    proxy-connect-timeout (seconds), https-redirect=true."""
    name = p.the_app.name
    EdgeSettings(ctx.platform, ctx.key, ctx.err).set(name, key_values(p.many("KEY=VALUE")))
    ctx.out(f"-----> Edge settings of {name} updated")
