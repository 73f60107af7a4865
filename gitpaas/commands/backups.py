"""backups, backups:create, backups:restore (admins only)."""

from __future__ import annotations

from ..errors import Forbidden, InvalidInput
from .registry import Context, command
from .spec import Arg, Flag, Parsed


@command("backups", Flag("--json"), admin_only=True)
def backups_list(ctx: Context, p: Parsed) -> None:
    """List this install's backup snapshots (oldest first)."""
    from ..backups import list_backups

    snaps = list_backups(ctx.platform.settings)
    if ctx.json_or_title(p, snaps):
        return
    if not snaps:
        ctx.out("No backups yet: gitpaas backups:create")
        return
    for snap in snaps:
        ctx.out(f"{snap['short_id']}  {snap['time'][:19].replace('T', ' ')}  {snap['hostname']}")


@command("backups:create", admin_only=True)
def backups_create(ctx: Context, p: Parsed) -> None:
    """Write one snapshot: state, secret key, repos, databases, storage, certificates."""
    from ..backups import create_backup

    snapshot = create_backup(ctx.platform, ctx.out, actor=ctx.key.name)
    ctx.out(f"Backed up to {snapshot[:8]}... done")


@command("backups:restore", Arg("SNAPSHOT|latest"), Flag("--force"), admin_only=True)
def backups_restore(ctx: Context, p: Parsed) -> None:
    """Bring every app back from a snapshot (local only, with gitpaas serve stopped)."""
    from ..backups.restore import restore_backup

    force = p.flag("--force")
    snapshot = p.required("SNAPSHOT|latest")
    if snapshot != "latest" and not (snapshot.isalnum() and 8 <= len(snapshot) <= 64):
        raise InvalidInput(f"invalid snapshot {snapshot!r}: an id from 'backups', or latest")
    if not ctx.is_local:
        raise Forbidden("backups:restore runs on the gitpaas host: gitpaas backups:restore")
    apps = restore_backup(ctx.platform, snapshot, ctx.out, force)
    ctx.out(f"Restored {len(apps)} apps ({', '.join(apps) or 'none'})... done;"
            " now start gitpaas serve")
