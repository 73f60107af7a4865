"""run, enter: a command in a one-off container of the app, or inside a running one.

Everything after ``--`` is the command, as an argument list: it is handed to Docker as is
(no shell on the host or in the container unless the command is one, e.g. ``sh -c``).
``--tty`` (run) and ``enter`` use the user's pty when ssh was given ``-t``.
"""

from __future__ import annotations

import re
import shlex

from .. import names
from ..errors import InvalidInput, NotFound
from .registry import Context, command
from .spec import APP, Arg, Flag, Option, Parsed, Rest

DEFAULT_SHELL = ["/bin/sh"]
# PROCESS.N holds a dot and app names never do.
TARGET_RE = re.compile(r"[^.]*\.[^.]*")


def audit_text(argv: list[str], limit: int = 200) -> str:
    """The command as the audit trail keeps it (never config values: only what was typed)."""
    text = shlex.join(argv)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@command("run", Option("--process", "TYPE", aliases=("-p",)), Flag("--tty", aliases=("-t",)),
         Rest("COMMAND [ARGS...]"), app=APP)
def run(ctx: Context, p: Parsed) -> int:
    """Run a command in a one-off container of the app's current release."""
    argv, app, tty = p.command, p.the_app, p.flag("--tty")
    process = p.option("--process") or "run"
    if process != "run":
        names.process_type(process)
    term = ctx.terminal(tty)
    if tty and not term.tty:
        raise InvalidInput("--tty needs a terminal: ssh -t ... run --tty -- COMMAND")
    ctx.platform.store.record_event(ctx.key.name, "run", app.name, audit_text(argv))
    return ctx.platform.deployer.run_command(app.name, argv, term, process)


@command("enter", Arg("PROCESS.N", optional=True, pattern=TARGET_RE),
         Rest("COMMAND [ARGS...]", optional=True), app=APP)
def enter(ctx: Context, p: Parsed) -> int:
    """Run a shell (or a command) inside one of the app's running containers."""
    argv, app, target = p.command, p.the_app, p.arg("PROCESS.N")
    running = [c for c in ctx.platform.runtime.list(app.name)
               if c.status == "running" and c.release == app.current_version
               and not c.oneoff]
    if target is not None:
        chosen = [c for c in running if f"{c.process}.{c.replica}" == target]
    else:
        chosen = sorted(running, key=lambda c: (c.process != "web", c.process, c.replica))
    if not chosen:
        what = target or "container"
        raise NotFound(f"{app.name} has no running {what}: see ps")
    info = chosen[0]
    argv = argv or DEFAULT_SHELL
    ctx.platform.store.record_event(ctx.key.name, "enter", app.name,
                                    f"{info.process}.{info.replica}: {audit_text(argv)}")
    return ctx.platform.runtime.exec_attached(info.id, argv, ctx.terminal(True))
