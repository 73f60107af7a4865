"""Small helpers to read flags, options and the app out of a command's arguments."""

from __future__ import annotations

from .. import names
from ..errors import InvalidInput, UserError
from ..store import App
from .registry import Context


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
    if args:
        raise InvalidInput(f"unexpected argument {args[0]!r}")


def reachable_apps(ctx: Context) -> list[App]:
    store = ctx.platform.store
    return [a for a in store.list_apps() if store.can_access(ctx.key, a)]


def take_app(ctx: Context, args: list[str], only_positional: bool = False) -> App:
    """The app: ``--app``/``-a``; else the first argument when it names a reachable app
    (always, with ``only_positional``: the app is then the command's only positional);
    else the only app this key can reach. Removes what it used from ``args``."""
    explicit = pop_option(args, "--app", "-a")
    if explicit is not None:
        return ctx.platform.app_for(ctx.key, explicit)
    if args and not args[0].startswith("-"):
        if only_positional:
            return ctx.platform.app_for(ctx.key, args.pop(0))
        if names.APP_RE.fullmatch(args[0]):
            app = ctx.platform.store.find_app(args[0])
            if app is not None and ctx.platform.store.can_access(ctx.key, app):
                args.pop(0)
                return app
    apps = reachable_apps(ctx)
    if len(apps) == 1:
        return apps[0]
    if not apps:
        raise UserError("you have no apps yet: push one, or name it with --app APP")
    listed = ", ".join(a.name for a in apps[:10]) + (", ..." if len(apps) > 10 else "")
    raise UserError(f"which app? name it with --app APP (one of: {listed})")
