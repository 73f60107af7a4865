"""routes and events: what Redis holds, and who did what."""

from __future__ import annotations

from ..services.access import Access
from ..services.apps import Apps
from .apps import fmt_time
from .args import parse_count
from .registry import Context, command
from .spec import APP_OR_ALL, Flag, Option, Parsed

MAX_EVENTS = 10_000


@command("routes", Flag("--json"), app=APP_OR_ALL)
def routes(ctx: Context, p: Parsed) -> None:
    """Show the Hipache frontends in Redis (identifier, then backends)."""
    platform = ctx.platform
    table = Apps(platform, ctx.key).routes(p.app.name if p.app else None)
    table = {h: v for h, v in sorted(table.items()) if v}
    prefix = platform.settings.routes_prefix
    if ctx.json_or_title(p, {f"{prefix}frontend:{h}": v for h, v in table.items()}):
        return
    for host, frontend in table.items():
        ctx.out(f"{prefix}frontend:{host}  {' '.join(frontend)}")


@command("events", Option("-n", "N", aliases=("--num",)), Flag("--json"), app=APP_OR_ALL)
def events(ctx: Context, p: Parsed) -> None:
    """Show the audit trail: who did what, when (newest first)."""
    limit = p.option("-n")
    limit_n = 50 if limit is None else parse_count(limit, "-n", 1, MAX_EVENTS)
    rows = Access(ctx.platform, ctx.key).events(p.app.name if p.app else None, limit_n)
    items = [{"time": fmt_time(r[0]), "actor": r[1], "action": r[2], "app": r[3],
              "detail": r[4]} for r in rows]
    if ctx.json_or_title(p, items):
        return
    for e in items:
        ctx.out(f"{e['time']}  {e['actor']:16}  {e['action']:16}  {e['app'] or '-':20}"
                f"  {e['detail']}")
