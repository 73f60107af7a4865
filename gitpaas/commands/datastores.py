"""mysql:*, postgres:*, redis:*: an app's datastores, one command module for every kind
(the doing: ``services.datastores``).

One MySQL or PostgreSQL database per app (on the server of ``mysql_admin_url`` /
``postgres_admin_url``; an app has one or the other: one DATABASE_URL), and one Redis
server of the app's own (``datastores/redis.py``). Creating one sets its config vars
(DATABASE_URL and DB_* for MySQL, DATABASE_URL for PostgreSQL, REDIS_URL) and rolls out
a new release as ``config:set`` does. The kinds differ in data, not in the flow:
``create``, ``info``, ``destroy``, ``export``, ``import``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..services.datastores import KINDS, MYSQL, Datastores, Kind
from .registry import Context, command
from .spec import APP, Flag, Option, Parsed

SUMMARIES = {
    "mysql": {
        "create": "Create a MySQL database for the app; set DATABASE_URL and DB_* (a new"
                  " release).",
        "info": "Show the app's database: name, user, host, URL (password masked), size.",
        "destroy": "Drop the app's database and user and unset its DB config vars (owner or"
                   " admin).",
        "export": "Write a SQL dump of the app's database to stdout.",
        "import": "Load a SQL dump from stdin into the app's database (as the app's own"
                  " user)."},
    "postgres": {
        "create": "Create a PostgreSQL database for the app; set DATABASE_URL (a new"
                  " release).",
        "info": "Show the app's PostgreSQL database: name, role, host, URL (masked), size.",
        "destroy": "Drop the app's PostgreSQL database and role, unset DATABASE_URL (owner or"
                   " admin).",
        "export": "Write a pg_dump custom-format archive of the app's database to stdout.",
        "import": "Load a pg_dump archive or plain SQL from stdin (as the app's own role)."},
    "redis": {
        "create": "Start a Redis server of the app's own; set REDIS_URL (a new release).",
        "info": "Show the app's Redis: state, URL (password masked), memory used, keys.",
        "destroy": "Remove the app's Redis and its data, unset REDIS_URL (owner or admin)."},
}


def create(kind: Kind, ctx: Context, p: Parsed) -> None:
    """``<kind>:create``: make it, record it, roll out its config vars."""
    Datastores(ctx.platform, ctx.key, ctx.err).create(
        kind, p.the_app.name, p.flag("--no-restart"), ctx.write_out)


def info(kind: Kind, ctx: Context, p: Parsed) -> None:
    """``<kind>:info``: what it is, where, its URL (the password masked unless --reveal)."""
    name = p.the_app.name
    details = Datastores(ctx.platform, ctx.key).info(kind, name, p.flag("--reveal"))
    if ctx.json_or_title(p, details, f"{name} {kind.title}"):
        return
    for key, value in details.items():
        label = key.replace("_", " ").replace("url", "URL").capitalize()
        ctx.out(f"{label + ':':14}{value if value is not None else '(not in config vars)'}")


def destroy(kind: Kind, ctx: Context, p: Parsed) -> None:
    """``<kind>:destroy``: drop it and its data, unset its config vars."""
    Datastores(ctx.platform, ctx.key, ctx.err).destroy(
        kind, p.the_app.name, p.option("--confirm"), ctx.write_out)


def export(kind: Kind, ctx: Context, p: Parsed) -> None:
    """``<kind>:export``: the dump on stdout, the summary on stderr."""
    write: Callable[[Any], None]
    if kind is MYSQL:
        write = ctx.write_out
    else:
        write = ctx.write_out_bytes or (lambda b: ctx.write_out(b.decode("latin-1")))
    name, size = Datastores(ctx.platform, ctx.key).export(kind, p.the_app.name, write,
                                                          ctx.closed)
    ctx.err(f"-----> Exported {name} ({size} bytes)")


def import_(kind: Kind, ctx: Context, p: Parsed) -> None:
    """``<kind>:import``: stdin loaded as the app's own user, into its own database."""
    name, size = Datastores(ctx.platform, ctx.key).import_(kind, p.the_app.name, ctx.stdin)
    ctx.out(f"Importing into {name}... done ({size} bytes)")


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

        run.__doc__ = SUMMARIES[kind.name][verb]
        command(f"{kind.name}:{verb}", *params, app=APP,
                note=NOTES.get(kind.name, {}).get(verb, ""))(run)


for _kind in KINDS.values():
    register(_kind)
