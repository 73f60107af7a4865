"""run, enter: a command in a one-off container of the app, or inside a running one.

Everything after ``--`` is the command, as an argument list: it is handed to Docker as is
(no shell on the host or in the container unless the command is one, e.g. ``sh -c``).
``--tty`` (run) and ``enter`` use the user's pty when ssh was given ``-t``.
"""

from __future__ import annotations

import re

from .. import names
from ..errors import InvalidInput
from ..services.apps import Apps
from .registry import Context, command
from .spec import APP, Arg, Flag, Option, Parsed, Rest

DEFAULT_SHELL = ["/bin/sh"]
# PROCESS.N holds a dot and app names never do.
TARGET_RE = re.compile(r"[^.]*\.[^.]*")


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
    return Apps(ctx.platform, ctx.key).run(app.name, argv, term, process)


@command("enter", Arg("PROCESS.N", optional=True, pattern=TARGET_RE),
         Rest("COMMAND [ARGS...]", optional=True), app=APP)
def enter(ctx: Context, p: Parsed) -> int:
    """Run a shell (or a command) inside one of the app's running containers."""
    apps = Apps(ctx.platform, ctx.key)
    return apps.enter(p.the_app.name, p.arg("PROCESS.N"), p.command or DEFAULT_SHELL,
                      lambda: ctx.terminal(True))
