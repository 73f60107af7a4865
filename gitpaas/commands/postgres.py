"""postgres:create, postgres:info, postgres:destroy, postgres:export, postgres:import.

One PostgreSQL database per app, on the server of ``postgres_admin_url``, like ``mysql:*``:
creating it sets DATABASE_URL and rolls out a new release; the password lives only in that
(encrypted) config var. An app has MySQL or PostgreSQL, not both (one DATABASE_URL).
"""

from __future__ import annotations

import time

from ..datastores.postgres import CONFIG_KEYS, credentials_from_config
from ..errors import NotFound, UserError
from ..store import App, Datastore
from .args import no_more, pop_flag, take_app, take_destroy_target
from .config import apply_change
from .registry import Context, command

KIND = "postgres"


def _datastore(ctx: Context, app: App) -> Datastore:
    found = ctx.platform.store.find_datastore(app.name, KIND)
    if found is None:
        raise NotFound(f"{app.name} has no PostgreSQL database: create one with"
                       " postgres:create")
    return found


@command("postgres:create", "postgres:create [APP] [--no-restart]")
def postgres_create(ctx: Context, args: list[str]) -> None:
    """Create a PostgreSQL database for the app; set DATABASE_URL (a new release)."""
    no_restart = pop_flag(args, "--no-restart")
    app = take_app(ctx, args, only_positional=True)
    no_more(args)
    platform = ctx.platform
    store = platform.store
    with platform.lock(app.name, f"postgres:create by {ctx.key.name}", ctx.err):
        if store.find_datastore(app.name, KIND):
            raise UserError(f"{app.name} has a PostgreSQL database already (postgres:info)")
        if store.find_datastore(app.name, "mysql"):
            raise UserError(f"{app.name} has a MySQL database: an app has one DATABASE_URL"
                            " (mysql:destroy first)")
        creds = platform.postgres.create(app.name)
        ctx.out(f"-----> Created PostgreSQL database {creds.database} for {app.name}")
        try:
            store.add_datastore(app.name, KIND, creds.database, creds.user)
            apply_change(ctx, app, creds.config_vars(), [], no_restart,
                         f"Add PostgreSQL database {creds.database}", "Setting")
        except BaseException:
            store.remove_datastore(app.name, KIND)
            platform.postgres.destroy(creds.database, creds.user)
            raise
        store.record_event(ctx.key.name, "postgres:create", app.name, creds.database)


@command("postgres:info", "postgres:info [APP] [--reveal] [--json]")
def postgres_info(ctx: Context, args: list[str]) -> None:
    """Show the app's PostgreSQL database: name, role, host, URL (masked), size."""
    reveal = pop_flag(args, "--reveal")
    as_json = pop_flag(args, "--json")
    app = take_app(ctx, args, only_positional=True)
    no_more(args)
    found = _datastore(ctx, app)
    creds = credentials_from_config(ctx.platform.store.get_config(app.name))
    stats = ctx.platform.postgres.stats(found.name)
    info = {
        "database": found.name, "role": found.user,
        "host": f"{creds.host}:{creds.port}" if creds else None,
        "url": creds.url(reveal) if creds else None,
        "tables": stats.get("tables"), "size_bytes": stats.get("bytes"),
        "created_at": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(found.created_at)),
    }
    if as_json:
        ctx.json(info)
        return
    ctx.out(f"=== {app.name} PostgreSQL")
    for key, value in info.items():
        label = key.replace("_", " ").replace("url", "URL").capitalize()
        ctx.out(f"{label + ':':14}{value if value is not None else '(not in config vars)'}")


@command("postgres:destroy", "postgres:destroy [APP] --confirm APP")
def postgres_destroy(ctx: Context, args: list[str]) -> None:
    """Drop the app's PostgreSQL database and role, unset DATABASE_URL (owner or admin)."""
    app = take_destroy_target(ctx, args, "destroy its database",
                              "drops the database of {app} and all its data")
    platform = ctx.platform
    with platform.lock(app.name, f"postgres:destroy by {ctx.key.name}", ctx.err):
        found = _datastore(ctx, app)
        platform.postgres.destroy(found.name, found.user)
        platform.store.remove_datastore(app.name, KIND)
        ctx.out(f"-----> Dropped PostgreSQL database {found.name} and role {found.user}")
        config = platform.store.get_config(app.name)
        unset = [k for k in CONFIG_KEYS if k in config]
        if unset:
            apply_change(ctx, app, {}, unset, True,
                         f"Remove PostgreSQL database {found.name}", "Unsetting")
        platform.store.record_event(ctx.key.name, "postgres:destroy", app.name, found.name)


@command("postgres:export", "postgres:export [APP]   (a pg_dump archive on stdout)")
def postgres_export(ctx: Context, args: list[str]) -> None:
    """Write a pg_dump custom-format archive of the app's database to stdout."""
    app = take_app(ctx, args, only_positional=True)
    no_more(args)
    found = _datastore(ctx, app)
    write = ctx.write_out_bytes or (lambda b: ctx.write_out(b.decode("latin-1")))
    size = ctx.platform.postgres.export(found.name, write, ctx.closed)
    ctx.err(f"-----> Exported {found.name} ({size} bytes)")


@command("postgres:import", "postgres:import [APP]   (an archive or plain SQL on stdin)")
def postgres_import(ctx: Context, args: list[str]) -> None:
    """Load a pg_dump archive or plain SQL from stdin (as the app's own role)."""
    app = take_app(ctx, args, only_positional=True)
    no_more(args)
    found = _datastore(ctx, app)
    creds = credentials_from_config(ctx.platform.store.get_config(app.name))
    if creds is None or creds.database != found.name:
        raise UserError(f"DATABASE_URL of {app.name} does not name its database {found.name}:"
                        " postgres:destroy and postgres:create again")
    size = ctx.platform.postgres.import_(creds, ctx.stdin)
    ctx.platform.store.record_event(ctx.key.name, "postgres:import", app.name, f"{size} bytes")
    ctx.out(f"Importing into {found.name}... done ({size} bytes)")
