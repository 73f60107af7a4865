"""releases, rollback."""

from __future__ import annotations

import re
from typing import Any

from ..errors import InvalidInput, NotFound
from ..services.access import Access
from ..store import Release
from .apps import fmt_time
from .args import parse_count
from .registry import Context, command
from .spec import APP, Arg, Flag, Option, Parsed

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


@command("releases", Option("-n", "N", aliases=("--num",)), Flag("--json"), app=APP,
         deploy_key=True)
def releases_list(ctx: Context, p: Parsed) -> None:
    """List an app's releases, newest first."""
    as_json = p.flag("--json")
    limit = p.option("-n")
    app = p.the_app
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


@command("rollback", Arg("vN", optional=True, pattern=VERSION_RE), app=APP)
def rollback(ctx: Context, p: Parsed) -> None:
    """Roll back to a release's image and config (default: the one before), as a new one."""
    app = p.the_app
    target_arg = p.arg("vN")
    store = ctx.platform.store
    with Access(ctx.platform, ctx.key, ctx.err).change(app.name, "rollback") as change:
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
        change.detail = f"to v{target.version}"
    ctx.out(f"done, v{new.version}")
