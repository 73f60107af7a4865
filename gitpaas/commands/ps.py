"""ps, ps:scale, ps:restart, ps:stop, ps:start (the doing: ``services.releases`` for
scaling and restarting, a new release of the current one; ``services.apps`` for the
processes, stop and start)."""

from __future__ import annotations

import time

from .. import names
from ..applogs import epoch_seconds, normalize_timestamp
from ..services.apps import Apps
from ..services.hosts import storage_node
from ..services.releases import Releases, formation_text
from .args import PAIR_RE, key_values, parse_count
from .registry import Context, command
from .spec import APP, Arg, Flag, Parsed

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


@command("ps", Flag("--json"), app=APP)
def ps(ctx: Context, p: Parsed) -> None:
    """Show an app's processes: type, replica, state, uptime, port, release."""
    app = p.the_app
    formation = Releases(ctx.platform, ctx.key).formation(app.name)
    rows = [{"name": f"{c.process}.{c.replica}", "process": c.process, "replica": c.replica,
             "release": c.release, "state": c.status,
             "uptime": uptime(started) if c.status in {"running", "paused"} else "-",
             "port": f"{c.host}:{c.port}" if c.port else None}
            for c, started in Apps(ctx.platform, ctx.key).processes(app.name)]
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


@command("ps:scale", Arg("PROCESS=COUNT", many=True, pattern=PAIR_RE), app=APP)
def ps_scale(ctx: Context, p: Parsed) -> None:
    """Set how many containers of each process type run, and roll out."""
    name = p.the_app.name
    counts = parse_scale(p.many("PROCESS=COUNT"))
    new = Releases(ctx.platform, ctx.key, ctx.err).scale(name, counts, ctx.write_out)
    if new is None:
        ctx.out(f"Scaling {name} to {formation_text(counts)}... done (no release yet)")
        return
    ctx.out(f"done, v{new.version}")


@command("ps:restart", app=APP)
def ps_restart(ctx: Context, p: Parsed) -> None:
    """Restart every process (a new release of the current one, without downtime)."""
    new = Releases(ctx.platform, ctx.key, ctx.err).restart(p.the_app.name, ctx.write_out)
    ctx.out(f"done, v{new.version}")


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
