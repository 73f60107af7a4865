"""logs: the app's containers' lines, interleaved by time, ``web.1 | ...``.

Lines of removed containers (earlier releases) come from the log archive (see
``applogs``); ``--tail`` polls the live containers until the client goes away.
"""

from __future__ import annotations

import time

from ..applogs import LogLine, epoch_seconds, matches, merge, parse_docker
from ..errors import InvalidInput
from ..runtime import ContainerInfo, DockerRuntime
from .args import no_more, pop_flag, pop_option, take_app
from .registry import Context, command

DEFAULT_LINES = 100
MAX_LINES = 10_000
POLL_SECONDS = 1.0


def source(info: ContainerInfo) -> str:
    return f"{info.process}.{info.replica}"


def live_lines(runtime: DockerRuntime, containers: list[ContainerInfo], process: str | None,
               tail: int | None = None, since: int | None = None) -> dict[str, list[LogLine]]:
    """The timestamped lines of each selected container, by container id."""
    return {c.id: parse_docker(runtime.timed_logs(c.id, tail=tail, since=since), source(c))
            for c in containers if matches(source(c), process)}


@command("logs", "logs [APP] [-n N] [-p PROCESS] [-t|--tail]", deploy_key=True)
def logs(ctx: Context, args: list[str]) -> None:
    """Show the app's logs (the last N lines; -t keeps streaming new ones)."""
    follow = pop_flag(args, "-t", "--tail")
    count = pop_option(args, "-n", "--num")
    process = pop_option(args, "-p", "--ps")
    app = take_app(ctx, args, only_positional=True)
    no_more(args)
    if count is not None and (not count.isdigit() or not 0 < int(count) <= MAX_LINES):
        raise InvalidInput(f"-n takes a number from 1 to {MAX_LINES}")
    limit = int(count or DEFAULT_LINES)
    platform = ctx.platform
    containers = platform.runtime.list(app.name)
    live = live_lines(platform.runtime, containers, process, tail=limit)
    kept = [li for li in platform.log_archive.read(app.name) if matches(li.source, process)]
    for line in merge([kept, *live.values()], limit):
        ctx.out(line.render())
    if follow:
        stream(ctx, app.name, process, {cid: lines[-1].time for cid, lines in live.items()
                                        if lines})


def stream(ctx: Context, app: str, process: str | None, last: dict[str, str]) -> None:
    """Print new lines of every container (old and new ones) until the client leaves."""
    runtime = ctx.platform.runtime
    started = time.time()
    while not ctx.closed():
        time.sleep(POLL_SECONDS)
        fresh: list[list[LogLine]] = []
        for c in runtime.list(app):
            if not matches(source(c), process):
                continue
            seen = last.get(c.id)
            since = epoch_seconds(seen) if seen else int(started) - 1
            lines = parse_docker(runtime.timed_logs(c.id, since=max(since, 1)), source(c))
            lines = [li for li in lines if seen is None or li.time > seen]
            if lines:
                last[c.id] = lines[-1].time
                fresh.append(lines)
        try:
            for line in merge(fresh):
                ctx.out(line.render())
        except OSError:
            return
