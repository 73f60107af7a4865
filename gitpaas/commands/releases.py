"""releases, rollback."""

from __future__ import annotations

import re
from typing import Any

from ..errors import InvalidInput, NotFound
from ..store import Release
from .apps import fmt_time
from .args import no_more, parse_count, pop_flag, pop_option, take_app
from .registry import Context, command

VERSION_RE = re.compile(r"v?([0-9]{1,9})")
MAX_LIST = 10_000


def parse_version(value: str) -> int:
    """``v3`` or ``3`` -> 3."""
    match = VERSION_RE.fullmatch(value)
    if not match or int(match.group(1)) < 1:
        raise InvalidInput(f"expected a release like v3, got {value!r}")
    return int(match.group(1))


def previous_release(releases: list[Release], current: int) -> Release | None:
    """The newest succeeded release older than ``current`` (``releases`` newest first)."""
    for release in releases:
        if release.version < current and release.status == "succeeded":
            return release
    return None


@command("releases", "releases [APP] [-n N] [--json]", deploy_key=True)
def releases_list(ctx: Context, args: list[str]) -> None:
    """List an app's releases, newest first."""
    as_json = pop_flag(args, "--json")
    limit = pop_option(args, "-n", "--num")
    app = take_app(ctx, args, only_positional=True)
    no_more(args)
    count = 20 if limit is None else parse_count(limit, "-n", 1, MAX_LIST)
    releases = ctx.platform.store.list_releases(app.name, count)
    rows: list[dict[str, Any]] = [
        {"version": r.version, "description": r.description, "created_by": r.created_by,
         "created_at": fmt_time(r.created_at), "commit": r.commit[:7], "status": r.status,
         "current": r.version == app.current_version} for r in releases]
    if as_json:
        ctx.json(rows)
        return
    ctx.out(f"=== {app.name} Releases")
    for r in rows:
        mark = "current" if r["current"] else r["status"]
        ctx.out(f"v{r['version']:<5} {r['description'][:40]:40}  {r['created_by']:16}"
                f"  {r['created_at']}  {r['commit']}  {mark}")


@command("rollback", "rollback [APP] [vN]")
def rollback(ctx: Context, args: list[str]) -> None:
    """Roll back to a release's image and config (default: the one before), as a new one."""
    if len(args) == 1 and VERSION_RE.fullmatch(args[0]):
        app = take_app(ctx, [])
    else:
        app = take_app(ctx, args, rest=1 if len(args) == 2 else 0)
    target_arg = args.pop(0) if args else None
    no_more(args)
    store = ctx.platform.store
    with ctx.platform.lock(app.name, f"rollback by {ctx.key.name}", ctx.err):
        current = store.current_release(app.name)
        if current is None:
            raise NotFound(f"{app.name} has no release yet")
        if target_arg is None:
            target = previous_release(store.list_releases(app.name, 1000), current.version)
            if target is None:
                raise NotFound(f"{app.name} has no release before v{current.version}")
        else:
            target = store.get_release(app.name, parse_version(target_arg))
        ctx.write_out(f"Rolling back {app.name} to v{target.version}... ")
        try:
            new = ctx.platform.deployer.deploy_release(
                app.name, target, target.config, f"Rollback to v{target.version}",
                ctx.key.name, lambda _: None)
        except BaseException:
            ctx.out("failed")
            raise
        old = store.get_config(app.name)
        store.set_config(app.name, target.config, [k for k in old if k not in target.config])
        store.record_event(ctx.key.name, "rollback", app.name, f"to v{target.version}")
    ctx.out(f"done, v{new.version}")
