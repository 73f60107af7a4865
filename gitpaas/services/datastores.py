"""The datastores service: an app's MySQL or PostgreSQL database and its own Redis.

The kinds differ in data (``Kind``: names, words, the adapter's calls), not in the flow:
``create``, ``info``, ``destroy``, ``export``, ``import_``. Creating one sets its config
vars and rolls out a new release as ``config:set`` does (``config.apply_change``); its
password lives only in those (encrypted) config vars. Changes run under the app's lock and
are recorded in the audit trail.
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
from ..store import App, Datastore
from ..terminal import ByteReader
from .access import Service, Writer
from .config import apply_change

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
    exists="{app} has a MySQL database already (see mysql:info)",
    missing="{app} has no MySQL database: create one with mysql:create",
    created="-----> Created MySQL database {creds.database} for {app}",
    destroyed="-----> Dropped MySQL database {found.name} and user {found.user}",
    one_of=("postgres",))

POSTGRES = Kind(
    "postgres", "PostgreSQL", "PostgreSQL database", postgres_store.CONFIG_KEYS,
    lambda config: postgres_store.credentials_from_config(dict(config)),
    lambda platform: platform.postgres,
    exists="{app} has a PostgreSQL database already (postgres:info)",
    missing="{app} has no PostgreSQL database: create one with postgres:create",
    created="-----> Created PostgreSQL database {creds.database} for {app}",
    destroyed="-----> Dropped PostgreSQL database {found.name} and role {found.user}",
    one_of=("mysql",))

REDIS = Kind(
    "redis", "Redis", "Redis", redis_store.CONFIG_KEYS,
    lambda config: redis_store.credentials_from_config(dict(config)),
    lambda platform: platform.redis_stores,
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



class Datastores(Service):
    """What a key does to its apps' datastores (access checked first)."""

    def found(self, kind: Kind, app: App) -> Datastore:
        """The app's datastore of ``kind``, else "has no ..."."""
        found = self.platform.store.find_datastore(app.name, kind.name)
        if found is None:
            raise NotFound(kind.missing.format(app=app.name))
        return found

    def create(self, kind: Kind, name: str, no_restart: bool, write: Writer) -> None:
        """Make it, record it, roll out its config vars; undone on failure."""
        platform, store = self.platform, self.platform.store
        with self.access.change(name, f"{kind.name}:create") as change:
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
                write(kind.created.format(creds=creds, app=app.name) + "\n")
                stored, user = (creds.database, creds.user) if kind.sql else (creds.host, "")
                store.add_datastore(app.name, kind.name, stored, user)
                apply_change(platform, self.access, app, creds.config_vars(), [], no_restart,
                             f"Add {kind.thing} {stored}" if kind.sql else f"Add {kind.thing}",
                             "Setting", write)
            except BaseException:
                store.remove_datastore(app.name, kind.name)
                if kind.sql:
                    adapter.destroy(creds.database, creds.user)
                else:
                    adapter.destroy(app.name)
                raise
            change.detail = stored

    def info(self, kind: Kind, name: str, reveal: bool) -> dict[str, Any]:
        """What it is, where, its URL (the password masked unless ``reveal``), its size."""
        app = self.access.app(name)
        found = self.found(kind, app)
        creds = kind.credentials(self.platform.store.get_config(app.name))
        url = creds.url(reveal) if creds else None
        adapter = kind.adapter(self.platform)
        if kind.sql:
            stats = adapter.stats(found.name)
            return {"database": found.name, ("user" if kind is MYSQL else "role"): found.user,
                    "host": f"{creds.host}:{creds.port}" if creds else None, "url": url,
                    "tables": stats.get("tables"), "size_bytes": stats.get("bytes"),
                    "created_at": time.strftime("%Y-%m-%d %H:%M:%S",
                                                time.gmtime(found.created_at))}
        stats = adapter.stats(app.name, creds.password if creds else "")
        return {"container": found.name, "url": url, **stats}

    def destroy(self, kind: Kind, name: str, confirm: str | None, write: Writer) -> None:
        """Drop it and its data, unset its config vars (owner or admin, ``confirm``
        names the app)."""
        platform = self.platform
        self.access.for_destroy(name, confirm, kind.destroy_what, kind.destroy_loses)
        with self.access.change(name, f"{kind.name}:destroy") as change:
            app = change.app
            found = platform.store.find_datastore(app.name, kind.name)
            if found is None:
                raise NotFound(MISSING_ON_DESTROY.get(kind.name, kind.missing)
                               .format(app=app.name))
            adapter = kind.adapter(platform)
            if kind.sql:
                adapter.destroy(found.name, found.user)
            else:
                adapter.destroy(app.name)
            platform.store.remove_datastore(app.name, kind.name)
            write(kind.destroyed.format(found=found, app=app.name) + "\n")
            config = platform.store.get_config(app.name)
            unset = [k for k in kind.config_keys if k in config]
            if unset:
                what = f"{kind.thing} {found.name}" if kind.sql else kind.thing
                apply_change(platform, self.access, app, {}, unset, True, f"Remove {what}",
                             "Unsetting", write)
            change.detail = found.name if kind.sql else app.name

    def export(self, kind: Kind, name: str, write: Callable[[Any], None],
               closed: Callable[[], bool]) -> tuple[str, int]:
        """The dump to ``write`` (text for MySQL, bytes for PostgreSQL): the database's
        name and the dump's size."""
        found = self.found(kind, self.access.app(name))
        return found.name, kind.adapter(self.platform).export(found.name, write, closed)

    def import_(self, kind: Kind, name: str, stdin: ByteReader) -> tuple[str, int]:
        """``stdin`` loaded as the app's own user, into its own database: the database's
        name and the bytes read."""
        app = self.access.app(name)
        found = self.found(kind, app)
        creds = kind.credentials(self.platform.store.get_config(app.name))
        if kind is MYSQL and creds is None:
            raise UserError(f"the database credentials of {app.name} are no longer in its"
                            " config vars (DATABASE_URL or DB_*): mysql:destroy and"
                            " mysql:create again")
        if kind is MYSQL and creds.database != found.name:
            raise UserError(f"DB_NAME/DATABASE_URL of {app.name} name {creds.database}, not"
                            f" its database {found.name}")
        if creds is None or creds.database != found.name:
            raise UserError(f"DATABASE_URL of {app.name} does not name its database"
                            f" {found.name}: {kind.name}:destroy and {kind.name}:create again")
        size = kind.adapter(self.platform).import_(creds, stdin)
        self.access.record(f"{kind.name}:import", app.name, f"{size} bytes")
        return found.name, size
