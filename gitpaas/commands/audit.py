"""routes and events: what Redis holds, and who did what."""

from __future__ import annotations

from .apps import fmt_time
from .args import no_more, parse_count, pop_flag, pop_option, reachable_apps, take_app
from .registry import Context, command

MAX_EVENTS = 10_000


def wants_app(args: list[str]) -> bool:
    """Whether the command was given an app (else: every app the key reaches)."""
    return bool(args)


@command("routes", "routes [APP] [--json]")
def routes(ctx: Context, args: list[str]) -> None:
    """Show the Hipache frontends in Redis (identifier, then backends)."""
    as_json = pop_flag(args, "--json")
    platform = ctx.platform
    if wants_app(args):
        app = take_app(ctx, args, only_positional=True)
        no_more(args)
        table = platform.routes.get_many(platform.deployer.hosts(app.name))
    elif ctx.key.is_admin:
        table = platform.routes.all()
    else:
        hosts = [h for a in reachable_apps(ctx) for h in platform.deployer.hosts(a.name)]
        table = platform.routes.get_many(hosts)
    table = {h: v for h, v in sorted(table.items()) if v}
    if as_json:
        ctx.json({f"{platform.settings.routes_prefix}frontend:{h}": v for h, v in table.items()})
        return
    for host, frontend in table.items():
        ctx.out(f"{platform.settings.routes_prefix}frontend:{host}  {' '.join(frontend)}")


@command("events", "events [APP] [-n N] [--json]")
def events(ctx: Context, args: list[str]) -> None:
    """Show the audit trail: who did what, when (newest first)."""
    as_json = pop_flag(args, "--json")
    limit = pop_option(args, "-n", "--num")
    limit_n = 50 if limit is None else parse_count(limit, "-n", 1, MAX_EVENTS)
    store = ctx.platform.store
    if wants_app(args):
        app = take_app(ctx, args, only_positional=True)
        no_more(args)
        rows = store.events(app.name, limit_n)
    elif ctx.key.is_admin:
        rows = store.events(None, limit_n)
    else:
        rows = store.events(None, limit_n, apps=[a.name for a in reachable_apps(ctx)])
    items = [{"time": fmt_time(r[0]), "actor": r[1], "action": r[2], "app": r[3],
              "detail": r[4]} for r in rows]
    if as_json:
        ctx.json(items)
        return
    for e in items:
        ctx.out(f"{e['time']}  {e['actor']:16}  {e['action']:16}  {e['app'] or '-':20}"
                f"  {e['detail']}")
