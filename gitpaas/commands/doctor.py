"""doctor (admins only)."""

from __future__ import annotations

from .registry import EXIT_SERVICE, Context, command
from .spec import Flag, Parsed


@command("doctor", Flag("--json"), admin_only=True)
def doctor(ctx: Context, p: Parsed) -> int:
    """Check services, disks, certificates, backups and crash loops; one line per problem."""
    from ..doctor import check_all

    as_json = p.flag("--json")
    problems = check_all(ctx.platform)
    if as_json:
        ctx.json([{"kind": p.kind, "app": p.app, "message": p.message} for p in problems])
    else:
        for problem in problems:
            ctx.out(problem.message)
        if not problems:
            ctx.out("No problems found.")
    return EXIT_SERVICE if problems else 0
