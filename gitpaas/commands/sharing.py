"""sharing, sharing:add, sharing:remove: who besides the owner may use an app."""

from __future__ import annotations

from .. import names
from ..errors import Conflict, InvalidInput, NotFound
from .args import no_more, pop_flag, require_owner, take_app, take_one
from .registry import Context, command


@command("sharing", "sharing [APP] [--json]")
def sharing_list(ctx: Context, args: list[str]) -> None:
    """List the keys an app is shared with (owner or admin only)."""
    as_json = pop_flag(args, "--json")
    app = take_app(ctx, args, only_positional=True)
    no_more(args)
    require_owner(ctx, app, "see who shares it")
    shared = ctx.platform.store.shares(app.name)
    deploy_keys = ctx.platform.store.deploy_keys(app.name)
    if as_json:
        ctx.json({"owner": app.owner, "shared_with": shared, "deploy_keys": deploy_keys})
        return
    ctx.out(f"=== {app.name} Access")
    ctx.out(f"{app.owner}  (owner)")
    for name in shared:
        ctx.out(name)
    for name in deploy_keys:
        ctx.out(f"{name}  (deploy key: push, releases, logs)")


@command("sharing:add", "sharing:add [APP] KEYNAME")
def sharing_add(ctx: Context, args: list[str]) -> None:
    """Let another key use the app (owner or admin only)."""
    app = take_app(ctx, args, rest=1)
    name = take_one(args, "sharing:add [APP] KEYNAME", names.key_name)
    require_owner(ctx, app, "share it")
    store = ctx.platform.store
    if store.get_key(name).deploy_app is not None:  # NotFound when there is no such key
        raise InvalidInput(f"{name} is a deploy key: it reaches only its own app")
    if name == app.owner:
        raise Conflict(f"{name} owns {app.name} already")
    store.add_share(app.name, name)
    store.record_event(ctx.key.name, "sharing:add", app.name, name)
    ctx.out(f"Sharing {app.name} with {name}... done")


@command("sharing:remove", "sharing:remove [APP] KEYNAME")
def sharing_remove(ctx: Context, args: list[str]) -> None:
    """Stop sharing the app with a key (owner or admin only)."""
    app = take_app(ctx, args, rest=1)
    name = take_one(args, "sharing:remove [APP] KEYNAME", names.key_name)
    require_owner(ctx, app, "change who shares it")
    if not ctx.platform.store.remove_share(app.name, name):
        raise NotFound(f"{app.name} is not shared with {name}")
    ctx.platform.store.record_event(ctx.key.name, "sharing:remove", app.name, name)
    ctx.out(f"Removing {name} from {app.name}... done")
