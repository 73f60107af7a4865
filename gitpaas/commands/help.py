"""help and version."""

from __future__ import annotations

from .. import __version__
from ..addresses import ssh_command
from ..errors import UserError
from .registry import COMMANDS, Context, command
from .spec import Arg, Parsed


@command("help", Arg("COMMAND", optional=True), deploy_key=True)
def help_(ctx: Context, p: Parsed) -> None:
    """List the commands, or show one command's usage."""
    name = p.arg("COMMAND")
    if name is not None:
        cmd = COMMANDS.get(name)
        if cmd is None:
            raise UserError(f"unknown command {name!r}, see 'help'")
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
def version(ctx: Context, p: Parsed) -> None:
    """Show the gitpaas version."""
    ctx.out(f"gitpaas {__version__}")
