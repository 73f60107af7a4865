"""mysql:create, mysql:info, mysql:destroy, mysql:export, mysql:import.

One MySQL database per app, on the server of ``mysql_admin_url``. Creating it sets the
config vars DATABASE_URL, DB_HOST, DB_NAME, DB_USER and DB_PASSWORD and rolls out a new
release (as config:set does). The password is kept only in those (encrypted) config vars.
"""

from __future__ import annotations

import time

from ..datastores.mysql import CONFIG_KEYS, Credentials, credentials_from_config
from ..errors import NotFound, UserError
from ..store import App, Datastore
from .args import no_more, pop_flag, take_app, take_destroy_target
from .config import apply_change
from .registry import Context, command

KIND = "mysql"


def _datastore(ctx: Context, app: App) -> Datastore:
    found = ctx.platform.store.find_datastore(app.name, KIND)
    if found is None:
        raise NotFound(f"{app.name} has no MySQL database: create one with mysql:create")
    return found


def _credentials(ctx: Context, app: App) -> Credentials:
    creds = credentials_from_config(ctx.platform.store.get_config(app.name))
    if creds is None:
        raise UserError(f"the database credentials of {app.name} are no longer in its config"
                        " vars (DATABASE_URL or DB_*): mysql:destroy and mysql:create again")
    return creds


@command("mysql:create", "mysql:create [APP] [--no-restart]")
def mysql_create(ctx: Context, args: list[str]) -> None:
    """Create a MySQL database for the app; set DATABASE_URL and DB_* (a new release)."""
    no_restart = pop_flag(args, "--no-restart")
    app = take_app(ctx, args, only_positional=True)
    no_more(args)
    platform = ctx.platform
    store = platform.store
    with platform.lock(app.name, f"mysql:create by {ctx.key.name}", ctx.err):
        if store.find_datastore(app.name, KIND):
            raise UserError(f"{app.name} has a MySQL database already (see mysql:info)")
        if store.find_datastore(app.name, "postgres"):
            raise UserError(f"{app.name} has a PostgreSQL database: an app has one"
                            " DATABASE_URL (postgres:destroy first)")
        creds = platform.mysql.create(app.name)
        ctx.out(f"-----> Created MySQL database {creds.database} for {app.name}")
        try:
            store.add_datastore(app.name, KIND, creds.database, creds.user)
            apply_change(ctx, app, creds.config_vars(), [], no_restart,
                         f"Add MySQL database {creds.database}", "Setting")
        except BaseException:
            store.remove_datastore(app.name, KIND)
            platform.mysql.destroy(creds.database, creds.user)
            raise
        store.record_event(ctx.key.name, "mysql:create", app.name, creds.database)


@command("mysql:info", "mysql:info [APP] [--reveal] [--json]")
def mysql_info(ctx: Context, args: list[str]) -> None:
    """Show the app's database: name, user, host, URL (password masked), size."""
    reveal = pop_flag(args, "--reveal")
    as_json = pop_flag(args, "--json")
    app = take_app(ctx, args, only_positional=True)
    no_more(args)
    found = _datastore(ctx, app)
    creds = credentials_from_config(ctx.platform.store.get_config(app.name))
    stats = ctx.platform.mysql.stats(found.name)
    info = {
        "database": found.name, "user": found.user,
        "host": f"{creds.host}:{creds.port}" if creds else None,
        "url": creds.url(reveal) if creds else None,
        "tables": stats["tables"], "size_bytes": stats["bytes"],
        "created_at": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(found.created_at)),
    }
    if as_json:
        ctx.json(info)
        return
    ctx.out(f"=== {app.name} MySQL")
    for key, value in info.items():
        label = key.replace("_", " ").replace("url", "URL").capitalize()
        ctx.out(f"{label + ':':14}{value if value is not None else '(not in config vars)'}")


@command("mysql:destroy", "mysql:destroy [APP] --confirm APP")
def mysql_destroy(ctx: Context, args: list[str]) -> None:
    """Drop the app's database and user and unset its DB config vars (owner or admin)."""
    app = take_destroy_target(ctx, args, "destroy its database",
                              "drops the database of {app} and all its data")
    platform = ctx.platform
    with platform.lock(app.name, f"mysql:destroy by {ctx.key.name}", ctx.err):
        found = _datastore(ctx, app)
        platform.mysql.destroy(found.name, found.user)
        platform.store.remove_datastore(app.name, KIND)
        ctx.out(f"-----> Dropped MySQL database {found.name} and user {found.user}")
        config = platform.store.get_config(app.name)
        unset = [k for k in CONFIG_KEYS if k in config]
        if unset:
            apply_change(ctx, app, {}, unset, True, f"Remove MySQL database {found.name}",
                         "Unsetting")
        platform.store.record_event(ctx.key.name, "mysql:destroy", app.name, found.name)


@command("mysql:export", "mysql:export [APP]   (the dump on stdout)")
def mysql_export(ctx: Context, args: list[str]) -> None:
    """Write a SQL dump of the app's database to stdout."""
    app = take_app(ctx, args, only_positional=True)
    no_more(args)
    found = _datastore(ctx, app)
    size = ctx.platform.mysql.export(found.name, ctx.write_out, ctx.closed)
    ctx.err(f"-----> Exported {found.name} ({size} bytes)")


@command("mysql:import", "mysql:import [APP]   (the dump on stdin)")
def mysql_import(ctx: Context, args: list[str]) -> None:
    """Load a SQL dump from stdin into the app's database (as the app's own user)."""
    app = take_app(ctx, args, only_positional=True)
    no_more(args)
    found = _datastore(ctx, app)
    creds = _credentials(ctx, app)
    if creds.database != found.name:
        raise UserError(f"DB_NAME/DATABASE_URL of {app.name} name {creds.database}, not its"
                        f" database {found.name}")
    size = ctx.platform.mysql.import_(creds, ctx.stdin)
    ctx.platform.store.record_event(ctx.key.name, "mysql:import", app.name, f"{size} bytes")
    ctx.out(f"Importing into {found.name}... done ({size} bytes)")
