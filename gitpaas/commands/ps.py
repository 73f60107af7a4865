"""ps, ps:scale, ps:restart, ps:stop, ps:start.

Scaling and restarting roll out a new release of the current one (same image and
config, the new formation) through the deployer: health checks, one route swap, the old
containers retired. So routes are always right and no request fails on the way.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from .. import names
from ..applogs import epoch_seconds, normalize_timestamp
from ..errors import Forbidden, InvalidInput, NotFound
from ..services.access import Access
from ..services.apps import Apps
from ..store import App, Release
from .args import PAIR_RE, key_values, parse_count
from .registry import Context, command
from .spec import APP, Arg, Flag, Parsed

if TYPE_CHECKING:
    pass

MAX_REPLICAS = 20


def parse_scale(args: list[str]) -> dict[str, int]:
    """``["web=3", "worker=1"]`` -> ``{"web": 3, "worker": 1}`` (0..MAX_REPLICAS)."""
    return {names.process_type(process): parse_count(count, process, 0, MAX_REPLICAS)
            for process, count in key_values(args, "PROCESS=COUNT")}


def uptime(started_at: str, now: float | None = None) -> str:
    """``3m12s`` since Docker's ``StartedAt``; ``-`` when unknown."""
    stamp = normalize_timestamp(started_at) if started_at else None
    if stamp is None:
        return "-"
    seconds = max(0, int((now or time.time()) - epoch_seconds(stamp)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def formation_text(formation: dict[str, int]) -> str:
    return " ".join(f"{p}={n}" for p, n in sorted(formation.items())) or "-"


@command("ps", Flag("--json"), app=APP)
def ps(ctx: Context, p: Parsed) -> None:
    """Show an app's processes: type, replica, state, uptime, port, release."""
    app = p.the_app
    formation = ctx.platform.store.formation(app.name)
    rows = [{"name": f"{c.process}.{c.replica}", "process": c.process, "replica": c.replica,
             "release": c.release, "state": c.status,
             "uptime": uptime(started) if c.status in {"running", "paused"} else "-",
             "port": f"{c.host}:{c.port}" if c.port else None}
            for c, started in Apps(ctx.platform, ctx.key).processes(app.name)]
    from ..services.hosts import storage_node

    pinned = storage_node(ctx.platform, app.name)
    if p.flag("--json"):
        extra = {"pinned_to": pinned} if pinned else {}
        ctx.json({"app": app.name, "release": app.current_version, "formation": formation,
                  "processes": rows, **extra})
        return
    release = f"v{app.current_version}" if app.current_version else "not deployed"
    ctx.out(f"=== {app.name} ({release}): {formation_text(formation)}")
    if pinned:
        ctx.out(f"pinned to node {pinned} (its storage is there)")
    if not rows:
        ctx.out("no processes running" + (" (ps:start starts them)"
                                          if app.current_version else ""))
    for r in rows:
        ctx.out(f"{r['name']:12}  {r['state']:10}  up {r['uptime']:8}  "
                f"{r['port'] or '-':21}  v{r['release']}")


def known_processes(release: Release | None) -> set[str]:
    if release is None:
        return set()
    return set(release.processes) or {"web"}


def current_or_fail(ctx: Context, app: App) -> Release:
    release = ctx.platform.store.current_release(app.name)
    if release is None:
        raise NotFound(f"{app.name} has no release yet: push it first")
    return release


def roll(ctx: Context, app: App, release: Release, description: str, headline: str) -> None:
    """A new release of ``release`` (same image and config), printing ``headline``."""
    ctx.write_out(f"{headline}... ")
    try:
        new = ctx.platform.deployer.deploy_release(app.name, release, release.config,
                                                   description, ctx.key.name, lambda _: None)
    except BaseException:
        ctx.out("failed")
        raise
    ctx.out(f"done, v{new.version}")


def formation_total(current: Release | None, formation: dict[str, int]) -> int:
    """Containers a formation runs (a type without a row: 1 if it is web, else 0)."""
    known = known_processes(current) | set(formation)
    return sum(formation.get(p, 1 if p == "web" else 0) for p in known)


def check_total(ctx: Context, app: App, current: Release | None, previous: dict[str, int],
                formation: dict[str, int]) -> None:
    """Refuse (non-admins) a formation of more than ``max_replicas`` containers, unless
    it runs no more than the one before (scaling down what an admin set is fine)."""
    limit = ctx.platform.settings.max_replicas
    total = formation_total(current, formation)
    if total > limit and total > formation_total(current, previous):
        raise Forbidden(f"{app.name} would run {total} containers; at most {limit}"
                        " (an admin sets max_replicas, or scales it)")


@command("ps:scale", Arg("PROCESS=COUNT", many=True, pattern=PAIR_RE), app=APP)
def ps_scale(ctx: Context, p: Parsed) -> None:
    """Set how many containers of each process type run, and roll out."""
    app = p.the_app
    counts = parse_scale(p.many("PROCESS=COUNT"))
    store = ctx.platform.store
    with Access(ctx.platform, ctx.key, ctx.err).change(app.name, "ps:scale") as change:
        current = store.current_release(app.name)
        unknown = sorted(set(counts) - known_processes(current)) if current else []
        if unknown:
            raise InvalidInput(f"{app.name} has no process type {', '.join(unknown)}"
                               f" (it has: {', '.join(sorted(known_processes(current)))})")
        text = formation_text(counts)
        previous = store.formation(app.name)
        if not ctx.key.is_admin:
            check_total(ctx, app, current, previous, {**previous, **counts})
        store.set_formation(app.name, counts)
        change.detail = text
        change.record_now()
        if current is None:
            ctx.out(f"Scaling {app.name} to {text}... done (no release yet)")
            return
        try:
            roll(ctx, app, current, f"Scale {text}", f"Scaling {app.name} to {text}")
        except BaseException:
            store.set_formation(app.name, previous)
            raise


@command("ps:restart", app=APP)
def ps_restart(ctx: Context, p: Parsed) -> None:
    """Restart every process (a new release of the current one, without downtime)."""
    app = p.the_app
    with Access(ctx.platform, ctx.key, ctx.err).change(app.name, "ps:restart") as change:
        current = current_or_fail(ctx, app)
        change.record_now()
        roll(ctx, app, current, "Restart", f"Restarting {app.name}")


@command("ps:stop", app=APP)
def ps_stop(ctx: Context, p: Parsed) -> None:
    """Stop every container of the app and remove its routes."""
    Apps(ctx.platform, ctx.key, ctx.err).stop(p.the_app.name, ctx.write_out)
    ctx.out("done")


@command("ps:start", app=APP)
def ps_start(ctx: Context, p: Parsed) -> None:
    """Start the current release again after ps:stop."""
    name = p.the_app.name
    started = Apps(ctx.platform, ctx.key, ctx.err).start(name, ctx.write_out)
    if started is None:
        ctx.out(f"{name} is running already (ps:restart restarts it)")
        return
    ctx.out(f"done, v{started.version}")
