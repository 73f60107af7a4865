"""logs: the app's containers' lines, interleaved by time, ``web.1 | ...``.

The lines come from the logs service (``services.logs``: the log archive and the live
containers); ``--tail`` prints what its follower reads until the client goes away.
"""

from __future__ import annotations

import queue
import time

from ..services.logs import CLOSED_CHECK_SECONDS, Logs
from .args import parse_count
from .registry import Context, command
from .spec import APP, Flag, Option, Parsed

DEFAULT_LINES = 100
MAX_LINES = 10_000


@command("logs", Option("-n", "N", aliases=("--num",)),
         Option("-p", "PROCESS", aliases=("--ps",)), Flag("-t|--tail"), app=APP,
         deploy_key=True)
def logs(ctx: Context, p: Parsed) -> None:
    """Show the app's logs (the last N lines; -t keeps streaming new ones)."""
    follow = p.flag("-t")
    count = p.option("-n")
    process = p.option("-p")
    app = p.the_app
    limit = DEFAULT_LINES if count is None else parse_count(count, "-n", 1, MAX_LINES)
    started = time.time()
    lines, marks = Logs(ctx.platform, ctx.key).recent(app.name, process, limit)
    for line in lines:
        ctx.out(line.render())
    if follow:
        stream(ctx, app.name, process, marks, started)


def stream(ctx: Context, app: str, process: str | None, last: dict[str, str],
           since: float) -> None:
    """Print the new lines of the app's containers as Docker sends them (containers that
    start meanwhile included) until the client leaves."""
    follower = Logs(ctx.platform, ctx.key).follower(app, process, last, since)
    try:
        while not ctx.closed():
            try:
                line = follower.lines.get(timeout=CLOSED_CHECK_SECONDS)
            except queue.Empty:
                continue
            ctx.out(line.render())
    except OSError:
        return
    finally:
        follower.close()
