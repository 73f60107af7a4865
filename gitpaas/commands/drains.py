"""drains, drains:add, drains:remove: forward an app's logs and events elsewhere (the
doing: ``services.drains``)."""

from __future__ import annotations

from .. import drains as drains_mod
from ..services.drains import Drains
from .apps import fmt_time
from .registry import Context, command
from .spec import APP, Arg, Flag, Parsed


@command("drains", Flag("--json"), app=APP)
def drains_list(ctx: Context, p: Parsed) -> None:
    """List the app's log drains (URLs without users, passwords or query strings)."""
    app = p.the_app
    rows = [{"url": drains_mod.public_url(d["url"]), "added_by": d["created_by"],
             "added_at": fmt_time(d["created_at"])}
            for d in Drains(ctx.platform, ctx.key).list(app.name)]
    if ctx.json_or_title(p, rows, f"{app.name} Drains"):
        return
    if not rows:
        ctx.out("no drains (drains:add APP syslog+tls://HOST:PORT)")
    for r in rows:
        ctx.out(f"{r['url']}  (added by {r['added_by']} {r['added_at']})")


@command("drains:add", Arg("URL"), app=APP)
def drains_add(ctx: Context, p: Parsed) -> None:
    """Forward the app's log lines and events to a syslog+tcp, syslog+tls or https URL."""
    app, url = p.the_app, p.required("URL")
    Drains(ctx.platform, ctx.key, ctx.err).add(app.name, url)
    ctx.out(f"Draining {app.name} to {drains_mod.public_url(url)}... done")


@command("drains:remove", Arg("URL"), app=APP)
def drains_remove(ctx: Context, p: Parsed) -> None:
    """Stop forwarding the app's logs to URL."""
    app, url = p.the_app, p.required("URL")
    Drains(ctx.platform, ctx.key, ctx.err).remove(app.name, url)
    ctx.out(f"Removing the drain {drains_mod.public_url(url)} of {app.name}... done")
