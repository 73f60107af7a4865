"""mysql:*, postgres:*, redis:*: an app's datastores, one command module for every kind.

One MySQL or PostgreSQL database per app (on the server of ``mysql_admin_url`` /
``postgres_admin_url``; an app has one or the other: one DATABASE_URL), and one Redis
server of the app's own (``datastores/redis.py``). Creating one sets its config vars
(DATABASE_URL and DB_* for MySQL, DATABASE_URL for PostgreSQL, REDIS_URL) and rolls out
a new release as ``config:set`` does; its password lives only in those (encrypted)
config vars. The kinds differ in data (``Kind``: names, words, the adapter's calls),
not in the flow: ``create``, ``info``, ``destroy``, ``export``, ``import``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..datastores import mysql as mysql_store
from ..datastores import postgres as postgres_store
from ..datastores import redis as redis_store
from ..errors import NotFound, UserError
from ..services.access import Access
from ..store import App, Datastore
from .config import apply_change
from .registry import Context, command
from .spec import APP, Flag, Option, Parsed

if TYPE_CHECKING:
    from ..platform import Platform


@dataclass(frozen=True)
class Kind:
    """What differs between the datastore kinds: names, words and the adapter's calls."""

    name: str                     # the command noun and the gp_datastores kind
    title: str                    # "MySQL"
    thing: str                    # "MySQL database", "Redis"
    config_keys: tuple[str, ...]
    credentials: Callable[[Mapping[str, str]], Any]   # from the app's config vars, or None
    adapter: Callable[[Platform], Any]
    summaries: dict[str, str]     # verb -> the help line
    exists: str                   # "{app} has ... already (...)"
    missing: str                  # "{app} has no ..."
    created: str                  # "-----> Created ... for {app}" ({creds} fields)
    destroyed: str                # "-----> Dropped ..." ({found} fields, {app})
    destroy_what: str = "destroy its database"
    destroy_loses: str = "drops the database of {app} and all its data"
    one_of: tuple[str, ...] = ()  # kinds an app cannot have beside this one
    sql: bool = True              # export/import and a database with a user


MYSQL = Kind(
    "mysql", "MySQL", "MySQL database", mysql_store.CONFIG_KEYS,
    lambda config: mysql_store.credentials_from_config(dict(config)),
    lambda platform: platform.mysql,
    {"create": "Create a MySQL database for the app; set DATABASE_URL and DB_* (a new release).",
     "info": "Show the app's database: name, user, host, URL (password masked), size.",
     "destroy": "Drop the app's database and user and unset its DB config vars (owner or"
                " admin).",
     "export": "Write a SQL dump of the app's database to stdout.",
     "import": "Load a SQL dump from stdin into the app's database (as the app's own user)."},
    exists="{app} has a MySQL database already (see mysql:info)",
    missing="{app} has no MySQL database: create one with mysql:create",
    created="-----> Created MySQL database {creds.database} for {app}",
    destroyed="-----> Dropped MySQL database {found.name} and user {found.user}",
    one_of=("postgres",))

POSTGRES = Kind(
    "postgres", "PostgreSQL", "PostgreSQL database", postgres_store.CONFIG_KEYS,
    lambda config: postgres_store.credentials_from_config(dict(config)),
    lambda platform: platform.postgres,
    {"create": "Create a PostgreSQL database for the app; set DATABASE_URL (a new release).",
     "info": "Show the app's PostgreSQL database: name, role, host, URL (masked), size.",
     "destroy": "Drop the app's PostgreSQL database and role, unset DATABASE_URL (owner or"
                " admin).",
     "export": "Write a pg_dump custom-format archive of the app's database to stdout.",
     "import": "Load a pg_dump archive or plain SQL from stdin (as the app's own role)."},
    exists="{app} has a PostgreSQL database already (postgres:info)",
    missing="{app} has no PostgreSQL database: create one with postgres:create",
    created="-----> Created PostgreSQL database {creds.database} for {app}",
    destroyed="-----> Dropped PostgreSQL database {found.name} and role {found.user}",
    one_of=("mysql",))

REDIS = Kind(
    "redis", "Redis", "Redis", redis_store.CONFIG_KEYS,
    lambda config: redis_store.credentials_from_config(dict(config)),
    lambda platform: platform.redis_stores,
    {"create": "Start a Redis server of the app's own; set REDIS_URL (a new release).",
     "info": "Show the app's Redis: state, URL (password masked), memory used, keys.",
     "destroy": "Remove the app's Redis and its data, unset REDIS_URL (owner or admin)."},
    exists="{app} has a Redis already (see redis:info)",
    missing="{app} has no Redis: start one with redis:create",
    created="-----> Started Redis {creds.host} for {app}",
    destroyed="-----> Removed the Redis of {app}",
    destroy_what="destroy its Redis",
    destroy_loses="removes the Redis of {app} and all its data",
    sql=False)

KINDS = {k.name: k for k in (MYSQL, POSTGRES, REDIS)}
# What the other kind's refusal says ("an app has one DATABASE_URL").
ONE_URL = "{app} has a {thing}: an app has one DATABASE_URL ({other}:destroy first)"
MISSING_ON_DESTROY = {"redis": "{app} has no Redis"}


def found_or_fail(ctx: Context, kind: Kind, app: App) -> Datastore:
    found = ctx.platform.store.find_datastore(app.name, kind.name)
    if found is None:
        raise NotFound(kind.missing.format(app=app.name))
    return found


def create(kind: Kind, ctx: Context, p: Parsed) -> None:
    """``<kind>:create``: make it, record it, roll out its config vars; undone on failure."""
    platform, store = ctx.platform, ctx.platform.store
    with Access(platform, ctx.key, ctx.err).change(p.the_app.name, f"{kind.name}:create") \
            as change:
        app = change.app
        if store.find_datastore(app.name, kind.name):
            raise UserError(kind.exists.format(app=app.name))
        for other in kind.one_of:
            if store.find_datastore(app.name, other):
                raise UserError(ONE_URL.format(app=app.name, thing=KINDS[other].thing,
                                               other=other))
        adapter = kind.adapter(platform)  # after the checks: it may be unconfigured
        creds = adapter.create(app.name)
        try:
            if not kind.sql:
                adapter.wait_ready(app.name, creds.password)
            ctx.out(kind.created.format(creds=creds, app=app.name))
            name, user = (creds.database, creds.user) if kind.sql else (creds.host, "")
            store.add_datastore(app.name, kind.name, name, user)
            apply_change(ctx, app, creds.config_vars(), [], p.flag("--no-restart"),
                         f"Add {kind.thing} {name}" if kind.sql else f"Add {kind.thing}",
                         "Setting")
        except BaseException:
            store.remove_datastore(app.name, kind.name)
            if kind.sql:
                adapter.destroy(creds.database, creds.user)
            else:
                adapter.destroy(app.name)
            raise
        change.detail = name


def info(kind: Kind, ctx: Context, p: Parsed) -> None:
    """``<kind>:info``: what it is, where, its URL (the password masked unless --reveal)."""
    app = p.the_app
    found = found_or_fail(ctx, kind, app)
    creds = kind.credentials(ctx.platform.store.get_config(app.name))
    url = creds.url(p.flag("--reveal")) if creds else None
    adapter = kind.adapter(ctx.platform)
    details: dict[str, Any]
    if kind.sql:
        stats = adapter.stats(found.name)
        details = {"database": found.name, ("user" if kind is MYSQL else "role"): found.user,
                   "host": f"{creds.host}:{creds.port}" if creds else None, "url": url,
                   "tables": stats.get("tables"), "size_bytes": stats.get("bytes"),
                   "created_at": time.strftime("%Y-%m-%d %H:%M:%S",
                                               time.gmtime(found.created_at))}
    else:
        stats = adapter.stats(app.name, creds.password if creds else "")
        details = {"container": found.name, "url": url, **stats}
    if p.flag("--json"):
        ctx.json(details)
        return
    ctx.out(f"=== {app.name} {kind.title}")
    for key, value in details.items():
        label = key.replace("_", " ").replace("url", "URL").capitalize()
        ctx.out(f"{label + ':':14}{value if value is not None else '(not in config vars)'}")


def destroy(kind: Kind, ctx: Context, p: Parsed) -> None:
    """``<kind>:destroy``: drop it and its data, unset its config vars (owner or admin,
    ``--confirm APP``)."""
    platform = ctx.platform
    access = Access(platform, ctx.key, ctx.err)
    access.for_destroy(p.the_app.name, p.option("--confirm"), kind.destroy_what,
                       kind.destroy_loses)
    with access.change(p.the_app.name, f"{kind.name}:destroy") as change:
        app = change.app
        found = platform.store.find_datastore(app.name, kind.name)
        if found is None:
            raise NotFound(MISSING_ON_DESTROY.get(kind.name, kind.missing).format(app=app.name))
        adapter = kind.adapter(platform)
        if kind.sql:
            adapter.destroy(found.name, found.user)
        else:
            adapter.destroy(app.name)
        platform.store.remove_datastore(app.name, kind.name)
        ctx.out(kind.destroyed.format(found=found, app=app.name))
        config = platform.store.get_config(app.name)
        unset = [k for k in kind.config_keys if k in config]
        if unset:
            what = f"{kind.thing} {found.name}" if kind.sql else kind.thing
            apply_change(ctx, app, {}, unset, True, f"Remove {what}", "Unsetting")
        change.detail = found.name if kind.sql else app.name


def export(kind: Kind, ctx: Context, p: Parsed) -> None:
    """``<kind>:export``: the dump on stdout, the summary on stderr."""
    found = found_or_fail(ctx, kind, p.the_app)
    write: Callable[[Any], None]
    if kind is MYSQL:
        write = ctx.write_out
    else:
        write = ctx.write_out_bytes or (lambda b: ctx.write_out(b.decode("latin-1")))
    size = kind.adapter(ctx.platform).export(found.name, write, ctx.closed)
    ctx.err(f"-----> Exported {found.name} ({size} bytes)")


def import_(kind: Kind, ctx: Context, p: Parsed) -> None:
    """``<kind>:import``: stdin loaded as the app's own user, into its own database."""
    app = p.the_app
    found = found_or_fail(ctx, kind, app)
    creds = kind.credentials(ctx.platform.store.get_config(app.name))
    if kind is MYSQL and creds is None:
        raise UserError(f"the database credentials of {app.name} are no longer in its config"
                        " vars (DATABASE_URL or DB_*): mysql:destroy and mysql:create again")
    if kind is MYSQL and creds.database != found.name:
        raise UserError(f"DB_NAME/DATABASE_URL of {app.name} name {creds.database}, not its"
                        f" database {found.name}")
    if creds is None or creds.database != found.name:
        raise UserError(f"DATABASE_URL of {app.name} does not name its database {found.name}:"
                        f" {kind.name}:destroy and {kind.name}:create again")
    size = kind.adapter(ctx.platform).import_(creds, ctx.stdin)
    ctx.platform.store.record_event(ctx.key.name, f"{kind.name}:import", app.name,
                                    f"{size} bytes")
    ctx.out(f"Importing into {found.name}... done ({size} bytes)")


Flow = Callable[[Kind, Context, Parsed], None]
NOTES = {"mysql": {"export": "the dump on stdout", "import": "the dump on stdin"},
         "postgres": {"export": "a pg_dump archive on stdout",
                      "import": "an archive or plain SQL on stdin"}}


def register(kind: Kind) -> None:
    """The commands of ``kind``, declared once here for every kind."""
    verbs: list[tuple[str, Flow, tuple[Flag | Option, ...]]] = [
        ("create", create, (Flag("--no-restart"),)),
        ("info", info, (Flag("--reveal"), Flag("--json"))),
        ("destroy", destroy, (Option("--confirm", "APP", required=True),)),
    ]
    if kind.sql:
        verbs += [("export", export, ()), ("import", import_, ())]
    for verb, flow, params in verbs:
        def run(ctx: Context, p: Parsed, flow: Flow = flow) -> None:
            flow(kind, ctx, p)

        run.__doc__ = kind.summaries[verb]
        command(f"{kind.name}:{verb}", *params, app=APP,
                note=NOTES.get(kind.name, {}).get(verb, ""))(run)


for _kind in KINDS.values():
    register(_kind)
