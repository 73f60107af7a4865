"""sharing, sharing:add, sharing:remove: who besides the owner may use an app."""

from __future__ import annotations

from ..services.apps import Apps
from .registry import Context, command
from .spec import APP, Arg, Flag, Parsed


@command("sharing", Flag("--json"), app=APP)
def sharing_list(ctx: Context, p: Parsed) -> None:
    """List the keys an app is shared with (owner or admin only)."""
    name = p.the_app.name
    access = Apps(ctx.platform, ctx.key).sharing(name)
    if ctx.json_or_title(p, {"owner": access.owner, "shared_with": access.shared_with,
                             "deploy_keys": access.deploy_keys}, f"{name} Access"):
        return
    ctx.out(f"{access.owner}  (owner)")
    for key in access.shared_with:
        ctx.out(key)
    for key in access.deploy_keys:
        ctx.out(f"{key}  (deploy key: push, releases, logs)")


@command("sharing:add", Arg("KEYNAME"), app=APP)
def sharing_add(ctx: Context, p: Parsed) -> None:
    """Let another key use the app (owner or admin only)."""
    name, key = p.the_app.name, p.required("KEYNAME")
    Apps(ctx.platform, ctx.key).share(name, key)
    ctx.out(f"Sharing {name} with {key}... done")


@command("sharing:remove", Arg("KEYNAME"), app=APP)
def sharing_remove(ctx: Context, p: Parsed) -> None:
    """Stop sharing the app with a key (owner or admin only)."""
    name, key = p.the_app.name, p.required("KEYNAME")
    Apps(ctx.platform, ctx.key).unshare(name, key)
    ctx.out(f"Removing {key} from {name}... done")
