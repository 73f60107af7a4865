"""The registry of ``noun:verb`` commands, shared by SSH, the local CLI and ``paas``.

It is the only place that turns ``GitPaasError`` into output and an exit code.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import Forbidden, GitPaasError, InvalidInput, UserError
from ..store import Key
from ..terminal import ByteReader, Terminal
from .spec import NO_APP, Param, Parsed, Spec, parse

if TYPE_CHECKING:
    from ..platform import Platform

log = logging.getLogger(__name__)

EXIT_OK, EXIT_USER, EXIT_SERVICE, EXIT_INTERNAL = 0, 1, 2, 3


@dataclass
class Context:
    """One command invocation: who runs it, with which streams."""

    platform: Platform
    key: Key
    stdin: ByteReader
    write_out: Callable[[str], None]
    write_err: Callable[[str], None]
    is_local: bool = False
    closed: Callable[[], bool] = field(default=lambda: False)
    # Raw streams and the user's pty for interactive commands (run, enter).
    recv: Callable[[int], bytes] | None = None
    write_out_bytes: Callable[[bytes], None] | None = None
    write_err_bytes: Callable[[bytes], None] | None = None
    pty_size: tuple[int, int] | None = None
    active_terminal: Terminal | None = None

    def terminal(self, tty: bool) -> Terminal:
        """The user's side of an interactive command; with ``tty``, the pty if there is
        one (``Terminal.tty`` says whether there is)."""
        term = Terminal(
            recv=self.recv or self.stdin.read,
            out=self.write_out_bytes or (lambda b: self.write_out(b.decode("utf-8", "replace"))),
            err=self.write_err_bytes or (lambda b: self.write_err(b.decode("utf-8", "replace"))),
            size=self.pty_size if tty else None)
        self.active_terminal = term
        return term

    def out(self, text: str = "") -> None:
        self.write_out(text + "\n")

    def err(self, text: str) -> None:
        self.write_err(text + "\n")

    def progress(self, line: str) -> None:
        self.out(line)

    def json(self, value: Any) -> None:
        self.out(json.dumps(value, indent=2, sort_keys=True, default=str))

    def json_or_title(self, p: Parsed, value: Any, title: str | None = None) -> bool:
        """With ``--json``: ``value`` as JSON, and True (nothing more to print); else the
        ``=== title`` line (when given), and False."""
        if p.flag("--json"):
            self.json(value)
            return True
        if title is not None:
            self.out(f"=== {title}")
        return False

    def require_admin(self) -> None:
        if not self.key.is_admin:
            raise Forbidden("only admins may do that")


CommandFunc = Callable[[Context, Parsed], int | None]


@dataclass(frozen=True)
class Command:
    spec: Spec
    func: CommandFunc
    summary: str
    admin_only: bool = False
    # Whether a deploy key (keys:add --deploy-only APP) may run it, on its own app.
    deploy_key: bool = False

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def usage(self) -> str:
        """The usage line, generated from the declaration."""
        return self.spec.usage()


DEPLOY_KEY_REFUSAL = ("a deploy key may only push to {app} and read its releases and logs"
                      " (releases, logs)")

COMMANDS: dict[str, Command] = {}


def command(name: str, *params: Param, app: str = NO_APP, note: str = "",
            admin_only: bool = False, deploy_key: bool = False
            ) -> Callable[[CommandFunc], CommandFunc]:
    """Register ``func(ctx, parsed)`` as ``name``, declared by ``params`` (see ``spec``);
    its docstring's first line is the summary.

    ``app``: whether it acts on an app (``spec.APP``: given or inferred by the one rule;
    ``spec.APP_OR_ALL``: when given, else every app the key reaches). ``note``: shown
    after the usage. ``deploy_key``: a deploy key may run it (on its one app; access
    checks still apply).
    """

    def register(func: CommandFunc) -> CommandFunc:
        summary = (func.__doc__ or "").strip().splitlines()[0] if func.__doc__ else ""
        COMMANDS[name] = Command(Spec(name, params, app, note), func, summary, admin_only,
                                 deploy_key)
        return func

    return register


def check_argv(argv: list[str]) -> None:
    for arg in argv:
        if "\x00" in arg or "\n" in arg or "\r" in arg:
            raise InvalidInput("arguments may not contain NUL or newline characters")


def run_command(ctx: Context, argv: list[str]) -> int:
    """Dispatch ``argv``; print errors as `` !     message``; return the exit code."""
    from . import load_all

    load_all()
    try:
        check_argv(argv)
        if not argv:
            argv = ["help"]
        name, args = argv[0], argv[1:]
        if name in {"-h", "--help"}:
            name, args = "help", []
        cmd = COMMANDS.get(name)
        if cmd is None:
            raise UserError(f"unknown command {name!r}, see 'help'")
        options = args[:args.index("--")] if "--" in args else args
        if "-h" in options or "--help" in options:
            help_ = COMMANDS["help"]
            return help_.func(ctx, parse(help_.spec, [name])) or 0
        if ctx.key.deploy_app is not None and not cmd.deploy_key:
            raise Forbidden(DEPLOY_KEY_REFUSAL.format(app=ctx.key.deploy_app))
        if cmd.admin_only:
            ctx.require_admin()
        return cmd.func(ctx, parse(cmd.spec, args, ctx.platform, ctx.key)) or EXIT_OK
    except GitPaasError as exc:
        ctx.err(f" !     {exc.message}")
        return exc.exit_code
    except Exception:  # noqa: BLE001 - internal: an incident id for the user, details in the log
        incident = secrets.token_hex(4)
        log.exception("incident %s while running %r", incident, argv[:1])
        ctx.err(f" !     internal error (incident {incident}); the server log has the details")
        return EXIT_INTERNAL
