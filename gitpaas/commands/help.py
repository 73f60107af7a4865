"""help and version."""

from __future__ import annotations

from .. import __version__
from ..addresses import ssh_command
from ..errors import UserError
from .registry import COMMANDS, Context, command


@command("help", "help [COMMAND]", deploy_key=True)
def help_(ctx: Context, args: list[str]) -> None:
    """List the commands, or show one command's usage."""
    if args:
        cmd = COMMANDS.get(args[0])
        if cmd is None:
            raise UserError(f"unknown command {args[0]!r}, see 'help'")
        ctx.out(f"Usage: {cmd.usage}\n\n  {cmd.summary}")
        return
    ctx.out(f"Usage: COMMAND [ARGS]   (over ssh: {ssh_command(ctx.platform.settings)}"
            " COMMAND [ARGS])\n")
    width = max(len(c.usage) for c in COMMANDS.values())
    for name in sorted(COMMANDS):
        cmd = COMMANDS[name]
        if cmd.admin_only and not ctx.key.is_admin:
            continue
        if ctx.key.deploy_app is not None and not cmd.deploy_key:
            continue
        ctx.out(f"  {cmd.usage.ljust(width)}  {cmd.summary}")


@command("version", deploy_key=True)
def version(ctx: Context, args: list[str]) -> None:
    """Show the gitpaas version."""
    ctx.out(f"gitpaas {__version__}")
