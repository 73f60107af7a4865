"""doctor (admins only)."""

from __future__ import annotations

from .args import no_more, pop_flag
from .registry import EXIT_SERVICE, Context, command


@command("doctor", "doctor [--json]", admin_only=True)
def doctor(ctx: Context, args: list[str]) -> int:
    """Check services, disks, certificates, backups and crash loops; one line per problem."""
    from ..doctor import check_all

    as_json = pop_flag(args, "--json")
    no_more(args)
    problems = check_all(ctx.platform)
    if as_json:
        ctx.json([{"kind": p.kind, "app": p.app, "message": p.message} for p in problems])
    else:
        for problem in problems:
            ctx.out(problem.message)
        if not problems:
            ctx.out("No problems found.")
    return EXIT_SERVICE if problems else 0
