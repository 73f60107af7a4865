"""cron: the app's scheduled jobs (app.json ``cron``), their next and last runs."""

from __future__ import annotations

import time
from typing import Any

from ..services.apps import Apps
from .apps import fmt_time
from .registry import Context, command
from .spec import APP, Flag, Parsed


@command("cron", Flag("--json"), app=APP)
def cron_list(ctx: Context, p: Parsed) -> None:
    """List the app's cron jobs: schedule, command, next and last run, status, duration."""
    app = p.the_app
    now = time.time()
    rows: list[dict[str, Any]] = []
    for job, state in Apps(ctx.platform, ctx.key).cron(app.name):
        rows.append({
            "id": job.id, "schedule": job.schedule, "command": job.command,
            "next_run": fmt_time(job.next_after(max(now, state.get("last_slot") or now))),
            "last_run": fmt_time(state["last_started"]) if state.get("last_started") else None,
            "status": state.get("last_status"),
            "duration": round(state["last_duration"], 1)
            if state.get("last_duration") is not None else None})
    if ctx.json_or_title(p, rows, f"{app.name} Cron"):
        return
    if not rows:
        ctx.out('no cron jobs (app.json: {"cron": [{"command": "...", "schedule": "@daily"}]})')
    for r in rows:
        last = (f"last {r['last_run']} {r['status']}"
                + (f" in {r['duration']}s" if r["duration"] is not None else "")
                if r["last_run"] else "never run")
        ctx.out(f"{r['schedule']:15}  {r['command'][:40]:40}  next {r['next_run']}  {last}")
