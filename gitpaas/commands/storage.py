"""storage, storage:mount, storage:unmount: persistent storage kept across releases (the
doing, and what SOURCE and CONTAINERDIR may be: ``services.storage``)."""

from __future__ import annotations

from ..services.storage import Storage
from ..services.storage import admin_host_dir as admin_host_dir  # re-exported
from ..services.storage import container_dir as container_dir  # re-exported
from .registry import Context, command
from .spec import APP, Arg, Flag, Parsed

MOUNT = Arg("NAME:CONTAINERDIR")


@command("storage", Flag("--json"), app=APP)
def storage_list(ctx: Context, p: Parsed) -> None:
    """List the app's storage (NAME or host directory -> container directory)."""
    name = p.the_app.name
    mounts, pinned = Storage(ctx.platform, ctx.key).list(name)
    rows = [{"host": m.host_path, "container": m.container_path, "volume": m.volume}
            for m in mounts]
    if ctx.json_or_title(p, rows, f"{name} Storage"):
        return
    for m in mounts:
        ctx.out(f"{m.host_path}:{m.container_path}")
    if pinned:
        ctx.out(f"pinned to node {pinned}: the storage lives there, so do the replicas")


@command("storage:mount", MOUNT, app=APP)
def storage_mount(ctx: Context, p: Parsed) -> None:
    """Mount the app's volume NAME into its containers (from the next release)."""
    name = p.the_app.name
    source, target = Storage(ctx.platform, ctx.key, ctx.err).mount(
        name, p.required(MOUNT.metavar))
    ctx.out(f"Mounting {source} at {target} in {name}... done"
            " (from the next release: deploy or ps:restart)")


@command("storage:unmount", MOUNT, app=APP)
def storage_unmount(ctx: Context, p: Parsed) -> None:
    """Stop mounting storage into the app's containers (its files are kept)."""
    name = p.the_app.name
    source, target = Storage(ctx.platform, ctx.key, ctx.err).unmount(
        name, p.required(MOUNT.metavar))
    ctx.out(f"Unmounting {source} from {target} in {name}... done"
            " (from the next release: deploy or ps:restart; the files are kept)")
