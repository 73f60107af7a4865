"""run, enter: a command in a one-off container of the app, or inside a running one.

Everything after ``--`` is the command, as an argument list: it is handed to Docker as is
(no shell on the host or in the container unless the command is one, e.g. ``sh -c``).
``--tty`` (run) and ``enter`` use the user's pty when ssh was given ``-t``.
"""

from __future__ import annotations

import shlex

from .. import names
from ..errors import InvalidInput, NotFound
from .args import no_more, pop_flag, pop_option, take_app
from .registry import Context, command

RUN_USAGE = "run [APP] [--process TYPE] [--tty] -- COMMAND [ARGS...]"
ENTER_USAGE = "enter [APP] [PROCESS.N] [-- COMMAND [ARGS...]]"
DEFAULT_SHELL = ["/bin/sh"]


def split_command(args: list[str]) -> tuple[list[str], list[str]]:
    """``[opts..., "--", cmd...]`` -> ``(opts, cmd)``; without ``--`` the command is empty."""
    if "--" not in args:
        return list(args), []
    at = args.index("--")
    return args[:at], args[at + 1:]


def audit_text(argv: list[str], limit: int = 200) -> str:
    """The command as the audit trail keeps it (never config values: only what was typed)."""
    text = shlex.join(argv)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@command("run", RUN_USAGE)
def run(ctx: Context, args: list[str]) -> int:
    """Run a command in a one-off container of the app's current release."""
    options, argv = split_command(args)
    if not argv:
        raise InvalidInput(f"give the command after --: {RUN_USAGE}")
    tty = pop_flag(options, "--tty", "-t")
    process = pop_option(options, "--process", "-p") or "run"
    if process != "run":
        names.process_type(process)
    app = take_app(ctx, options, only_positional=bool(options))
    no_more(options)
    term = ctx.terminal(tty)
    if tty and not term.tty:
        raise InvalidInput("--tty needs a terminal: ssh -t ... run --tty -- COMMAND")
    ctx.platform.store.record_event(ctx.key.name, "run", app.name, audit_text(argv))
    return ctx.platform.deployer.run_command(app.name, argv, term, process)


@command("enter", ENTER_USAGE)
def enter(ctx: Context, args: list[str]) -> int:
    """Run a shell (or a command) inside one of the app's running containers."""
    options, argv = split_command(args)
    # PROCESS.N holds a dot and app names never do: the last such argument is the target.
    target = options.pop() if options and "." in options[-1] else None
    app = take_app(ctx, options, only_positional=bool(options))
    no_more(options)
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
