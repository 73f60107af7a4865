"""redis:create, redis:info, redis:destroy: a Redis server of the app's own.

See ``datastores/redis.py``: one container per app, on the app's network, with a volume
and a password; REDIS_URL is set as a config var (a new release, as config:set does).
"""

from __future__ import annotations

from ..datastores.redis import CONFIG_KEYS, credentials_from_config
from ..errors import NotFound, UserError
from .args import no_more, pop_flag, take_app, take_destroy_target
from .config import apply_change
from .registry import Context, command

KIND = "redis"


@command("redis:create", "redis:create [APP] [--no-restart]")
def redis_create(ctx: Context, args: list[str]) -> None:
    """Start a Redis server of the app's own; set REDIS_URL (a new release)."""
    no_restart = pop_flag(args, "--no-restart")
    app = take_app(ctx, args, only_positional=True)
    no_more(args)
    platform = ctx.platform
    store = platform.store
    with platform.lock(app.name, f"redis:create by {ctx.key.name}", ctx.err):
        if store.find_datastore(app.name, KIND):
            raise UserError(f"{app.name} has a Redis already (see redis:info)")
        stores = platform.redis_stores
        creds = stores.create(app.name)
        try:
            stores.wait_ready(app.name, creds.password)
            ctx.out(f"-----> Started Redis {creds.host} for {app.name}")
            store.add_datastore(app.name, KIND, creds.host, "")
            apply_change(ctx, app, creds.config_vars(), [], no_restart,
                         "Add Redis", "Setting")
        except BaseException:
            store.remove_datastore(app.name, KIND)
            stores.destroy(app.name)
            raise
        store.record_event(ctx.key.name, "redis:create", app.name, creds.host)


@command("redis:info", "redis:info [APP] [--reveal] [--json]")
def redis_info(ctx: Context, args: list[str]) -> None:
    """Show the app's Redis: state, URL (password masked), memory used, keys."""
    reveal = pop_flag(args, "--reveal")
    as_json = pop_flag(args, "--json")
    app = take_app(ctx, args, only_positional=True)
    no_more(args)
    found = ctx.platform.store.find_datastore(app.name, KIND)
    if found is None:
        raise NotFound(f"{app.name} has no Redis: start one with redis:create")
    creds = credentials_from_config(ctx.platform.store.get_config(app.name))
    stats = ctx.platform.redis_stores.stats(app.name, creds.password if creds else "")
    info = {"container": found.name, "url": creds.url(reveal) if creds else None, **stats}
    if as_json:
        ctx.json(info)
        return
    ctx.out(f"=== {app.name} Redis")
    for key, value in info.items():
        label = key.replace("_", " ").replace("url", "URL").capitalize()
        ctx.out(f"{label + ':':14}{value if value is not None else '(not in config vars)'}")


@command("redis:destroy", "redis:destroy [APP] --confirm APP")
def redis_destroy(ctx: Context, args: list[str]) -> None:
    """Remove the app's Redis and its data, unset REDIS_URL (owner or admin)."""
    app = take_destroy_target(ctx, args, "destroy its Redis",
                              "removes the Redis of {app} and all its data")
    platform = ctx.platform
    with platform.lock(app.name, f"redis:destroy by {ctx.key.name}", ctx.err):
        if platform.store.find_datastore(app.name, KIND) is None:
            raise NotFound(f"{app.name} has no Redis")
        platform.redis_stores.destroy(app.name)
        platform.store.remove_datastore(app.name, KIND)
        ctx.out(f"-----> Removed the Redis of {app.name}")
        config = platform.store.get_config(app.name)
        unset = [k for k in CONFIG_KEYS if k in config]
        if unset:
            apply_change(ctx, app, {}, unset, True, "Remove Redis", "Unsetting")
        platform.store.record_event(ctx.key.name, "redis:destroy", app.name, app.name)
