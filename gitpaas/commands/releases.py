"""releases, rollback (the doing: ``services.releases``)."""

from __future__ import annotations

import re
from typing import Any

from ..errors import InvalidInput
from ..services.releases import Releases
from ..services.releases import previous_release as previous_release  # re-exported
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


@command("releases", Option("-n", "N", aliases=("--num",)), Flag("--json"), app=APP,
         deploy_key=True)
def releases_list(ctx: Context, p: Parsed) -> None:
    """List an app's releases, newest first."""
    limit = p.option("-n")
    count = 20 if limit is None else parse_count(limit, "-n", 1, MAX_LIST)
    app, releases = Releases(ctx.platform, ctx.key).list(p.the_app.name, count)
    rows: list[dict[str, Any]] = [
        {"version": r.version, "description": r.description, "created_by": r.created_by,
         "created_at": fmt_time(r.created_at), "commit": r.commit[:7], "status": r.status,
         "current": r.version == app.current_version} for r in releases]
    if ctx.json_or_title(p, rows, f"{app.name} Releases"):
        return
    for r in rows:
        mark = "current" if r["current"] else r["status"]
        ctx.out(f"v{r['version']:<5} {r['description'][:40]:40}  {r['created_by']:16}"
                f"  {r['created_at']}  {r['commit']}  {mark}")


@command("rollback", Arg("vN", optional=True, pattern=VERSION_RE), app=APP)
def rollback(ctx: Context, p: Parsed) -> None:
    """Roll back to a release's image and config (default: the one before), as a new one."""
    target = p.arg("vN")
    version = None if target is None else parse_version(target)
    new = Releases(ctx.platform, ctx.key, ctx.err).rollback(p.the_app.name, version,
                                                            ctx.write_out)
    ctx.out(f"done, v{new.version}")
