"""Small helpers to read flags, options and the app out of a command's arguments."""

from __future__ import annotations

import re
from collections.abc import Callable

from .. import names
from ..errors import Forbidden, InvalidInput, UserError
from ..store import App
from .registry import Context

DIGITS_RE = re.compile(r"[0-9]{1,9}")  # ASCII only: str.isdigit() accepts '²' and '٣'


def parse_count(value: str, what: str, low: int, high: int) -> int:
    """A whole number of ASCII digits from ``low`` to ``high``, else ``InvalidInput``."""
    if not DIGITS_RE.fullmatch(value) or not low <= int(value) <= high:
        raise InvalidInput(f"{what} takes a number from {low} to {high}, not {value!r}")
    return int(value)


def pop_flag(args: list[str], *flags: str) -> bool:
    """Remove every occurrence of ``flags`` from ``args``; True if one was there."""
    found = False
    for flag in flags:
        while flag in args:
            args.remove(flag)
            found = True
    return found


def pop_option(args: list[str], *options: str) -> str | None:
    """Remove ``--opt VALUE`` or ``--opt=VALUE`` from ``args`` and return VALUE."""
    value = None
    i = 0
    while i < len(args):
        arg = args[i]
        name, eq, inline = arg.partition("=")
        if arg in options:
            if i + 1 >= len(args):
                raise InvalidInput(f"{arg} needs a value")
            value = args[i + 1]
            del args[i:i + 2]
            continue
        if eq and name in options and name.startswith("--"):
            value = inline
            del args[i]
            continue
        i += 1
    return value


def no_more(args: list[str]) -> None:
    """Refuse any argument left over."""
    if args:
        raise InvalidInput(f"unexpected argument {args[0]!r}")


def reachable_apps(ctx: Context) -> list[App]:
    """The apps the context's key may see and act on."""
    store = ctx.platform.store
    return [a for a in store.list_apps() if store.can_access(ctx.key, a)]


def positionals(args: list[str]) -> list[str]:
    """The arguments that are not options."""
    return [a for a in args if not a.startswith("-")]


def take_app(ctx: Context, args: list[str], only_positional: bool = False,
             rest: int | None = None) -> App:
    """The app the command acts on; removes what it used from ``args``.

    One rule for every command: ``--app``/``-a`` anywhere always wins; else a first
    positional that names an app the key may use is the app; else, if the key reaches
    exactly one app, that app, and every positional is an argument; else a one-line error
    asking for ``--app`` that lists only apps the key may use. When the count of
    positionals says the first must be the app (``only_positional``: the command takes no
    other; ``rest``: it takes exactly ``rest`` more and ``rest + 1`` were given), a first
    positional that is not an app the key may use is "not found", like a missing app.
    Pop every other option before calling.
    """
    explicit = pop_option(args, "--app", "-a")
    if explicit is not None:
        return ctx.platform.app_for(ctx.key, explicit)
    if args and not args[0].startswith("-"):
        first = args[0]
        app = _usable_app(ctx, first)
        if app is not None:
            args.pop(0)
            return app
        count = len(positionals(args))
        if only_positional or (rest is not None and count == rest + 1):
            return ctx.platform.app_for(ctx.key, first)  # "not found": the same either way
    apps = reachable_apps(ctx)
    if len(apps) == 1:
        return apps[0]
    if not apps:
        raise UserError("you have no apps yet: push one, or name it with --app APP")
    listed = ", ".join(a.name for a in apps[:10]) + (", ..." if len(apps) > 10 else "")
    raise UserError(f"which app? name it with --app APP (one of: {listed})")


def _usable_app(ctx: Context, name: str) -> App | None:
    """The app ``name`` if it exists and the key may use it; else None (nothing learnt)."""
    if not names.APP_RE.fullmatch(name):
        return None
    store = ctx.platform.store
    app = store.find_app(name)
    return app if app is not None and store.can_access(ctx.key, app) else None


def require_owner(ctx: Context, app: App, what: str) -> None:
    """Only the app's owner or an admin may do ``what``."""
    if not (ctx.key.is_admin or app.owner == ctx.key.name):
        raise Forbidden(f"only the owner of {app.name} or an admin may {what}")


def take_destroy_target(ctx: Context, args: list[str], what: str, loses: str) -> App:
    """The app of a destructive command: owner or admin only, ``--confirm APP`` required.

    ``what`` completes "only the owner ... may ..."; ``loses`` says what goes, for the
    refusal ("this destroys shop and its data")."""
    confirm = pop_option(args, "--confirm")
    app = take_app(ctx, args, only_positional=True)
    no_more(args)
    require_owner(ctx, app, what)
    if confirm != app.name:
        raise InvalidInput(f"this {loses.format(app=app.name)}: add --confirm {app.name}")
    return app


def take_one(args: list[str], usage: str, validate: Callable[[str], str]) -> str:
    """The single remaining argument, validated (``names.hostname``, ``names.key_name``)."""
    if len(args) != 1:
        raise InvalidInput(f"usage: {usage}")
    return validate(args[0])
