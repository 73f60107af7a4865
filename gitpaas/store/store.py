"""The state store's operations. Config values and release snapshots are encrypted."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import names
from ..errors import Conflict, NotFound, ServiceError
from ..secrets import Cipher
from . import schema
from .db import Cursor, Database
from .models import App, Backup, Datastore, Key, Mount, Release

if TYPE_CHECKING:
    from ..cron import CronJob

APP_COLUMNS = "name, owner, deploy_branch, buildpack, current_version, created_at"
MAX_DRAINS = 5
KEY_COLUMNS = "name, fingerprint, public_key, is_admin, created_at, deploy_app"
RELEASE_COLUMNS = (
    "app, version, image, commit_sha, config, processes, description, created_by,"
    " created_at, status, extra"
)


class Store:
    """All durable state of one gitpaas install."""

    def __init__(self, db: Database, cipher: Cipher) -> None:
        self.db = db
        self.cipher = cipher

    def migrate(self) -> None:
        """Bring the schema to ``schema.VERSION``, one numbered step per transaction.

        A schema newer than this code knows is refused: the code would misread it.
        """
        with self.db.transaction() as cur:
            for sql in schema.statements(self.db.dialect):
                cur.execute(sql)
            row = cur.execute("SELECT value FROM gp_meta WHERE name = 'schema'").one()
            if row is None:
                cur.execute("INSERT INTO gp_meta (name, value) VALUES ('schema', '1')")
            current = int(row[0]) if row else 1
        if current > schema.VERSION:
            raise ServiceError(
                f"the state store has schema version {current}, newer than this gitpaas"
                f" knows ({schema.VERSION}): upgrade gitpaas, or restore a backup")
        for version, sqls in schema.steps(self.db.dialect, current):
            with self.db.transaction() as cur:
                for sql in sqls:
                    cur.execute(sql)
                cur.execute("UPDATE gp_meta SET value = ? WHERE name = 'schema'",
                            (str(version),))

    def schema_version(self) -> int:
        """The schema version the state store holds."""
        with self.db.transaction() as cur:
            row = cur.execute("SELECT value FROM gp_meta WHERE name = 'schema'").one()
        return int(row[0]) if row else 0

    # -- keys ---------------------------------------------------------------------------

    def add_key(self, name: str, fingerprint: str, public_key: str,
                deploy_app: str | None = None) -> Key:
        """Register a key; the first key ever added is an admin.

        With ``deploy_app``, a deploy key: it may push to that app and read its releases
        and logs, nothing else (never an admin).
        """
        names.key_name(name)
        with self.db.transaction() as cur:
            if deploy_app is not None and not cur.execute(
                    "SELECT 1 FROM gp_apps WHERE name = ?", (deploy_app,)).one():
                raise NotFound(f"no app named {deploy_app!r}")
            if cur.execute("SELECT 1 FROM gp_keys WHERE name = ?", (name,)).one():
                raise Conflict(f"a key named {name!r} exists already")
            row = cur.execute("SELECT name FROM gp_keys WHERE fingerprint = ?",
                              (fingerprint,)).one()
            if row:
                raise Conflict(f"this key is registered already as {row[0]!r}")
            first = cur.execute("SELECT COUNT(*) FROM gp_keys").value() == 0
            if first and deploy_app is not None:
                raise Conflict("the first key is the admin's: add a person's key first")
            now = time.time()
            cur.execute(
                f"INSERT INTO gp_keys ({KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
                (name, fingerprint, public_key, int(first), now, deploy_app))
        return Key(name, fingerprint, public_key, first, now, deploy_app)

    @staticmethod
    def _key(row: tuple[Any, ...]) -> Key:
        return Key(row[0], row[1], row[2], bool(row[3]), row[4], row[5])

    def key_by_fingerprint(self, fingerprint: str) -> Key | None:
        with self.db.transaction() as cur:
            row = cur.execute(f"SELECT {KEY_COLUMNS} FROM gp_keys WHERE fingerprint = ?",
                              (fingerprint,)).one()
        return self._key(row) if row else None

    def get_key(self, name: str) -> Key:
        with self.db.transaction() as cur:
            row = cur.execute(f"SELECT {KEY_COLUMNS} FROM gp_keys WHERE name = ?",
                              (name,)).one()
        if row is None:
            raise NotFound(f"no key named {name!r}")
        return self._key(row)

    def list_keys(self) -> list[Key]:
        with self.db.transaction() as cur:
            rows = cur.execute(f"SELECT {KEY_COLUMNS} FROM gp_keys"
                               " ORDER BY created_at, name").all()
        return [self._key(r) for r in rows]

    def deploy_keys(self, app: str) -> list[str]:
        """The names of the deploy keys of ``app``."""
        with self.db.transaction() as cur:
            rows = cur.execute("SELECT name FROM gp_keys WHERE deploy_app = ? ORDER BY name",
                               (app,)).all()
        return [r[0] for r in rows]

    def remove_key(self, name: str, new_owner: str) -> list[str]:
        """Remove a key; the apps it owned go to ``new_owner`` (returned), so a later
        key of the same name inherits nothing."""
        with self.db.transaction() as cur:
            if cur.execute("DELETE FROM gp_keys WHERE name = ?", (name,)).rowcount == 0:
                raise NotFound(f"no key named {name!r}")
            cur.execute("DELETE FROM gp_shares WHERE key_name = ?", (name,))
            owned = [r[0] for r in cur.execute("SELECT name FROM gp_apps WHERE owner = ?"
                                               " ORDER BY name", (name,)).all()]
            cur.execute("UPDATE gp_apps SET owner = ? WHERE owner = ?", (new_owner, name))
        return owned

    # -- apps ---------------------------------------------------------------------------

    @staticmethod
    def _app(row: tuple[Any, ...]) -> App:
        return App(row[0], row[1], row[2], row[3], row[4], row[5])

    def create_app(self, name: str, owner: str, deploy_branch: str,
                   default_host: str = "") -> App:
        """Create ``name``; refused when it exists or its default host is another app's
        domain."""
        names.app_name(name)
        now = time.time()
        with self.db.transaction() as cur:
            if cur.execute("SELECT 1 FROM gp_apps WHERE name = ?", (name,)).one():
                raise Conflict(f"app {name!r} exists already")
            if default_host and cur.execute("SELECT 1 FROM gp_domains WHERE host = ?",
                                            (default_host,)).one():
                raise Conflict(f"{default_host} is taken by another app's domain")
            cur.execute(f"INSERT INTO gp_apps ({APP_COLUMNS}) VALUES (?, ?, ?, NULL, NULL, ?)",
                        (name, owner, deploy_branch, now))
            # The app's identity: events of an earlier app of the same name are not its.
            cur.execute("UPDATE gp_apps SET uid = ? WHERE name = ?", (uuid.uuid4().hex, name))
            cur.execute("INSERT INTO gp_formation (app, process, replicas) VALUES (?, 'web', 1)",
                        (name,))
        return App(name, owner, deploy_branch, None, None, now)

    def find_app(self, name: str) -> App | None:
        with self.db.transaction() as cur:
            row = cur.execute(f"SELECT {APP_COLUMNS} FROM gp_apps WHERE name = ?", (name,)).one()
        return self._app(row) if row else None

    def get_app(self, name: str) -> App:
        app = self.find_app(name)
        if app is None:
            raise NotFound(f"no app named {name!r}")
        return app

    def list_apps(self) -> list[App]:
        with self.db.transaction() as cur:
            rows = cur.execute(f"SELECT {APP_COLUMNS} FROM gp_apps ORDER BY name").all()
        return [self._app(r) for r in rows]

    def update_app(self, name: str, **fields: object) -> None:
        allowed = {"owner", "deploy_branch", "buildpack", "current_version"}
        assert set(fields) <= allowed, fields
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self.db.transaction() as cur:
            cur.execute(f"UPDATE gp_apps SET {sets} WHERE name = ?", (*fields.values(), name))

    def delete_app(self, name: str) -> None:
        """Remove every row about ``name``."""
        with self.db.transaction() as cur:
            for table in ("gp_config", "gp_releases", "gp_formation", "gp_domains",
                          "gp_shares", "gp_resources", "gp_datastores", "gp_mounts",
                          "gp_cron", "gp_drains", "gp_edge"):
                cur.execute(f"DELETE FROM {table} WHERE app = ?", (name,))
            # A deploy key must not reach a later app of the same name.
            cur.execute("DELETE FROM gp_keys WHERE deploy_app = ?", (name,))
            cur.execute("DELETE FROM gp_apps WHERE name = ?", (name,))

    # -- app networks (issue 17: spares claimed by new apps) ------------------------------

    def app_network(self, app: str) -> str | None:
        """The Docker network ``app`` claimed, or None (it uses ``<instance>.<app>``)."""
        with self.db.transaction() as cur:
            row = cur.execute("SELECT n.network FROM gp_app_networks n JOIN gp_apps a"
                              " ON a.uid = n.app_uid WHERE a.name = ?", (app,)).one()
        return row[0] if row else None

    def claim_app_network(self, app: str, network: str) -> str | None:
        """Give the spare ``network`` to ``app`` (by its uid, in one transaction): returns
        the app's network (one it claimed before wins), or None when ``network`` went to
        an app before (a network is never given twice: it is the table's key) or ``app``
        does not exist."""
        try:
            with self.db.transaction() as cur:
                uid = cur.execute("SELECT uid FROM gp_apps WHERE name = ?", (app,)).one()
                if uid is None:
                    return None
                row = cur.execute("SELECT network FROM gp_app_networks WHERE app_uid = ?",
                                  (uid[0],)).one()
                if row is not None:
                    return str(row[0])
                if cur.execute("SELECT 1 FROM gp_app_networks WHERE network = ?",
                               (network,)).one():
                    return None
                cur.execute("INSERT INTO gp_app_networks (network, app_uid, app, claimed_at)"
                            " VALUES (?, ?, ?, ?)", (network, uid[0], app, time.time()))
        except ServiceError as exc:  # a concurrent claim (MySQL): the unique keys decide
            if "integrity" not in type(exc.__cause__).__name__.lower():
                raise
            return self.app_network(app)
        return network

    def claimed_networks(self) -> dict[str, str | None]:
        """Every claimed network: the app that has it, None when that app is gone (its
        network is a leftover to remove, never a spare again)."""
        with self.db.transaction() as cur:
            rows = cur.execute("SELECT n.network, a.name FROM gp_app_networks n LEFT JOIN"
                               " gp_apps a ON a.uid = n.app_uid").all()
        return {str(network): app for network, app in rows}

    def forget_app_network(self, network: str) -> None:
        """After ``network`` was removed from Docker: its claim goes too."""
        with self.db.transaction() as cur:
            cur.execute("DELETE FROM gp_app_networks WHERE network = ?", (network,))

    # -- access -------------------------------------------------------------------------

    def shares(self, app: str) -> list[str]:
        with self.db.transaction() as cur:
            rows = cur.execute("SELECT key_name FROM gp_shares WHERE app = ? ORDER BY key_name",
                               (app,)).all()
        return [r[0] for r in rows]

    def add_share(self, app: str, key_name: str) -> None:
        with self.db.transaction() as cur:
            if not cur.execute("SELECT 1 FROM gp_shares WHERE app = ? AND key_name = ?",
                               (app, key_name)).one():
                cur.execute("INSERT INTO gp_shares (app, key_name) VALUES (?, ?)",
                            (app, key_name))

    def remove_share(self, app: str, key_name: str) -> bool:
        with self.db.transaction() as cur:
            return cur.execute("DELETE FROM gp_shares WHERE app = ? AND key_name = ?",
                               (app, key_name)).rowcount > 0

    def can_access(self, key: Key, app: App) -> bool:
        """Admins reach every app; others their own and those shared with them; a deploy
        key its one app."""
        if key.deploy_app is not None:
            return app.name == key.deploy_app
        return key.is_admin or app.owner == key.name or key.name in self.shares(app.name)

    # -- config -------------------------------------------------------------------------

    def get_config(self, app: str) -> dict[str, str]:
        with self.db.transaction() as cur:
            rows = cur.execute("SELECT name, value FROM gp_config WHERE app = ? ORDER BY name",
                               (app,)).all()
        return {r[0]: self.cipher.decrypt(r[1]).decode() for r in rows}

    def set_config(self, app: str, values: Mapping[str, str], unset: Iterable[str] = ()) -> None:
        """Set and unset config vars in one transaction."""
        with self.db.transaction() as cur:
            for name in list(unset) + list(values):
                cur.execute("DELETE FROM gp_config WHERE app = ? AND name = ?", (app, name))
            for name, value in values.items():
                cur.execute("INSERT INTO gp_config (app, name, value) VALUES (?, ?, ?)",
                            (app, name, self.cipher.encrypt(value.encode())))

    # -- releases -----------------------------------------------------------------------

    def _release(self, row: tuple[Any, ...]) -> Release:
        config = json.loads(self.cipher.decrypt(row[4]))
        return Release(row[0], row[1], row[2], row[3], config, json.loads(row[5]), row[6],
                       row[7], row[8], row[9], json.loads(row[10]))

    def add_release(self, app: str, image: str | Callable[[int], str], commit: str,
                    config: Mapping[str, str], processes: Mapping[str, str],
                    description: str, created_by: str, status: str = "pending",
                    extra: Mapping[str, Any] | None = None) -> Release:
        """Record the next release of ``app``: its version (highest + 1) is allocated here,
        once, in the transaction. ``image`` may be a function of that version (the tag a
        build will make)."""
        blob = self.cipher.encrypt(json.dumps(dict(config)).encode())
        now = time.time()
        with self.db.transaction() as cur:
            self._lock_app_row(cur, app)
            last = cur.execute("SELECT MAX(version) FROM gp_releases WHERE app = ?",
                               (app,)).value()
            version = int(last or 0) + 1
            if callable(image):
                image = image(version)
            cur.execute(
                f"INSERT INTO gp_releases ({RELEASE_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (app, version, image, commit, blob, json.dumps(dict(processes)), description,
                 created_by, now, status, json.dumps(dict(extra or {}))))
        return Release(app, version, image, commit, dict(config), dict(processes),
                       description, created_by, now, status, dict(extra or {}))

    @staticmethod
    def _lock_app_row(cur: Cursor, app: str) -> None:
        """Serialise writers of one app (SQLite's BEGIN IMMEDIATE already does)."""
        if cur.dialect == "mysql":
            cur.execute("SELECT name FROM gp_apps WHERE name = ? FOR UPDATE", (app,))

    def set_release_status(self, app: str, version: int, status: str) -> None:
        with self.db.transaction() as cur:
            cur.execute("UPDATE gp_releases SET status = ? WHERE app = ? AND version = ?",
                        (status, app, version))

    def activate_release(self, app: str, version: int) -> None:
        """Mark ``version`` live and the app's current release, in one transaction."""
        with self.db.transaction() as cur:
            cur.execute("UPDATE gp_releases SET status = 'succeeded' WHERE app = ? AND"
                        " version = ?", (app, version))
            cur.execute("UPDATE gp_apps SET current_version = ? WHERE name = ?", (version, app))

    def get_release(self, app: str, version: int) -> Release:
        with self.db.transaction() as cur:
            row = cur.execute(f"SELECT {RELEASE_COLUMNS} FROM gp_releases WHERE app = ? AND"
                              " version = ?", (app, version)).one()
        if row is None:
            raise NotFound(f"{app} has no release v{version}")
        return self._release(row)

    def current_release(self, app: str) -> Release | None:
        current = self.get_app(app).current_version
        return self.get_release(app, current) if current else None

    def list_releases(self, app: str, limit: int = 100) -> list[Release]:
        with self.db.transaction() as cur:
            rows = cur.execute(f"SELECT {RELEASE_COLUMNS} FROM gp_releases WHERE app = ?"
                               " ORDER BY version DESC LIMIT ?", (app, limit)).all()
        return [self._release(r) for r in rows]

    # -- formation ----------------------------------------------------------------------

    def formation(self, app: str) -> dict[str, int]:
        with self.db.transaction() as cur:
            rows = cur.execute("SELECT process, replicas FROM gp_formation WHERE app = ?"
                               " ORDER BY process", (app,)).all()
        return {r[0]: r[1] for r in rows}

    def set_formation(self, app: str, counts: Mapping[str, int]) -> None:
        with self.db.transaction() as cur:
            for process, replicas in counts.items():
                cur.execute("DELETE FROM gp_formation WHERE app = ? AND process = ?",
                            (app, process))
                cur.execute("INSERT INTO gp_formation (app, process, replicas) VALUES (?,?,?)",
                            (app, process, int(replicas)))

    # -- resources ----------------------------------------------------------------------

    def resources(self, app: str) -> dict[str, tuple[str, float]]:
        """``{process or '*': (memory, cpus)}`` as set by resources:set."""
        with self.db.transaction() as cur:
            rows = cur.execute("SELECT process, memory, cpus FROM gp_resources WHERE app = ?",
                               (app,)).all()
        return {r[0]: (r[1], float(r[2])) for r in rows}

    def set_resources(self, app: str, process: str, memory: str, cpus: float) -> None:
        with self.db.transaction() as cur:
            cur.execute("DELETE FROM gp_resources WHERE app = ? AND process = ?", (app, process))
            cur.execute("INSERT INTO gp_resources (app, process, memory, cpus) VALUES (?,?,?,?)",
                        (app, process, memory, cpus))

    # -- edge settings ------------------------------------------------------------------

    def edge_settings(self, app: str) -> dict[str, str]:
        """The app's edge settings (edge:set), by name."""
        with self.db.transaction() as cur:
            rows = cur.execute("SELECT name, value FROM gp_edge WHERE app = ? ORDER BY name",
                               (app,)).all()
        return {r[0]: r[1] for r in rows}

    def set_edge_settings(self, app: str, values: Mapping[str, str],
                          unset: Iterable[str] = ()) -> None:
        with self.db.transaction() as cur:
            for name in [*values, *unset]:
                cur.execute("DELETE FROM gp_edge WHERE app = ? AND name = ?", (app, name))
            for name, value in values.items():
                cur.execute("INSERT INTO gp_edge (app, name, value) VALUES (?, ?, ?)",
                            (app, name, value))

    # -- domains ------------------------------------------------------------------------

    def domains(self, app: str) -> list[str]:
        with self.db.transaction() as cur:
            rows = cur.execute("SELECT host FROM gp_domains WHERE app = ? ORDER BY host",
                               (app,)).all()
        return [r[0] for r in rows]

    def all_domains(self) -> dict[str, list[str]]:
        """Every app's custom domains in one query: ``{app: [host, ...]}`` (sorted)."""
        with self.db.transaction() as cur:
            rows = cur.execute("SELECT app, host FROM gp_domains ORDER BY app, host").all()
        found: dict[str, list[str]] = {}
        for app, host in rows:
            found.setdefault(app, []).append(host)
        return found

    def domain_owner(self, host: str) -> str | None:
        with self.db.transaction() as cur:
            row = cur.execute("SELECT app FROM gp_domains WHERE host = ?", (host,)).one()
        return row[0] if row else None

    def related_domains(self, host: str) -> list[tuple[str, str]]:
        """(host, app) of the domains that are a parent of ``host`` (``example.com``,
        ``*.example.com`` for ``www.example.com``) or under it (``a.www.example.com``,
        ``*.www.example.com``); ``host`` itself is not included."""
        labels = host.split(".")
        parents = [".".join(labels[i:]) for i in range(1, len(labels))]
        parents += ["*." + p for p in parents]
        params: list[str] = [f"%.{host}"]
        sql = "SELECT host, app FROM gp_domains WHERE host LIKE ?"
        if parents:
            sql += f" OR host IN ({', '.join('?' for _ in parents)})"
            params += parents
        with self.db.transaction() as cur:
            return [(r[0], r[1]) for r in cur.execute(sql + " ORDER BY host", params).all()]

    def add_domain(self, app: str, host: str) -> None:
        with self.db.transaction() as cur:
            row = cur.execute("SELECT app FROM gp_domains WHERE host = ?", (host,)).one()
            if row and row[0] != app:
                raise Conflict(f"{host} is taken by another app")
            if not row:
                cur.execute("INSERT INTO gp_domains (host, app) VALUES (?, ?)", (host, app))

    def remove_domain(self, app: str, host: str) -> None:
        with self.db.transaction() as cur:
            if cur.execute("DELETE FROM gp_domains WHERE app = ? AND host = ?",
                           (app, host)).rowcount == 0:
                raise NotFound(f"{app} has no domain {host}")

    # -- datastores ---------------------------------------------------------------------

    def datastores(self, app: str) -> list[Datastore]:
        with self.db.transaction() as cur:
            rows = cur.execute("SELECT app, kind, name, db_user, created_at FROM gp_datastores"
                               " WHERE app = ? ORDER BY kind", (app,)).all()
        return [Datastore(*r) for r in rows]

    def find_datastore(self, app: str, kind: str) -> Datastore | None:
        return next((d for d in self.datastores(app) if d.kind == kind), None)

    def add_datastore(self, app: str, kind: str, name: str, user: str) -> Datastore:
        """Record a datastore; one of each kind per app."""
        now = time.time()
        with self.db.transaction() as cur:
            self._lock_app_row(cur, app)
            if cur.execute("SELECT 1 FROM gp_datastores WHERE app = ? AND kind = ?",
                           (app, kind)).one():
                raise Conflict(f"{app} has a {kind} database already")
            cur.execute("INSERT INTO gp_datastores (app, kind, name, db_user, created_at)"
                        " VALUES (?, ?, ?, ?, ?)", (app, kind, name, user, now))
        return Datastore(app, kind, name, user, now)

    def remove_datastore(self, app: str, kind: str) -> None:
        with self.db.transaction() as cur:
            cur.execute("DELETE FROM gp_datastores WHERE app = ? AND kind = ?", (app, kind))

    # -- storage mounts -----------------------------------------------------------------

    def mounts(self, app: str) -> list[Mount]:
        with self.db.transaction() as cur:
            rows = cur.execute("SELECT app, host_path, container_path FROM gp_mounts"
                               " WHERE app = ? ORDER BY container_path", (app,)).all()
        return [Mount(*r) for r in rows]

    def add_mount(self, app: str, host_path: str, container_path: str) -> None:
        """Bind ``host_path`` at ``container_path``; one mount per container path."""
        with self.db.transaction() as cur:
            row = cur.execute("SELECT host_path FROM gp_mounts WHERE app = ? AND"
                              " container_path = ?", (app, container_path)).one()
            if row:
                raise Conflict(f"{container_path} of {app} is mounted already ({row[0]})")
            cur.execute("INSERT INTO gp_mounts (app, container_path, host_path)"
                        " VALUES (?, ?, ?)", (app, container_path, host_path))

    def replace_mount_source(self, app: str, container_path: str, old: str, new: str) -> None:
        """The mount at ``container_path`` now takes ``new`` (if it still took ``old``)."""
        with self.db.transaction() as cur:
            cur.execute("UPDATE gp_mounts SET host_path = ? WHERE app = ? AND"
                        " container_path = ? AND host_path = ?", (new, app, container_path, old))

    def remove_mount(self, app: str, host_path: str, container_path: str) -> None:
        with self.db.transaction() as cur:
            if cur.execute("DELETE FROM gp_mounts WHERE app = ? AND container_path = ? AND"
                           " host_path = ?", (app, container_path, host_path)).rowcount == 0:
                raise NotFound(f"{app} has no mount {host_path}:{container_path}")

    # -- cron ---------------------------------------------------------------------------

    def cron_states(self, app: str) -> dict[str, dict[str, Any]]:
        """``{job id: {last_slot, last_started, last_status, last_duration}}`` of ``app``."""
        with self.db.transaction() as cur:
            rows = cur.execute("SELECT job_id, last_slot, last_started, last_status,"
                               " last_duration FROM gp_cron WHERE app = ?", (app,)).all()
        return {r[0]: {"last_slot": r[1], "last_started": r[2], "last_status": r[3],
                       "last_duration": r[4]} for r in rows}

    def _cron_upsert(self, cur: Cursor, app: str, job: CronJob) -> None:
        if not cur.execute("SELECT 1 FROM gp_cron WHERE app = ? AND job_id = ?",
                           (app, job.id)).one():
            cur.execute("INSERT INTO gp_cron (app, job_id, command, schedule) VALUES"
                        " (?, ?, ?, ?)", (app, job.id, job.command, job.schedule))

    def cron_mark_slot(self, app: str, job: CronJob, slot: float) -> None:
        """The job has handled every slot up to ``slot``."""
        with self.db.transaction() as cur:
            self._cron_upsert(cur, app, job)
            cur.execute("UPDATE gp_cron SET last_slot = ? WHERE app = ? AND job_id = ?",
                        (slot, app, job.id))

    def cron_started(self, app: str, job: CronJob, when: float) -> None:
        with self.db.transaction() as cur:
            self._cron_upsert(cur, app, job)
            cur.execute("UPDATE gp_cron SET last_started = ?, last_status = 'running',"
                        " last_duration = NULL WHERE app = ? AND job_id = ?",
                        (when, app, job.id))

    def cron_finished(self, app: str, job: CronJob, status: str, duration: float) -> None:
        with self.db.transaction() as cur:
            cur.execute("UPDATE gp_cron SET last_status = ?, last_duration = ? WHERE app = ?"
                        " AND job_id = ?", (status[:200], duration, app, job.id))

    # -- drains -------------------------------------------------------------------------

    @staticmethod
    def _url_id(url: str) -> str:
        return hashlib.sha256(url.encode()).hexdigest()

    def add_drain(self, app: str, url: str, private_ok: bool, created_by: str) -> None:
        with self.db.transaction() as cur:
            if cur.execute("SELECT 1 FROM gp_drains WHERE app = ? AND url_id = ?",
                           (app, self._url_id(url))).one():
                raise Conflict(f"{app} has that drain already")
            if cur.execute("SELECT COUNT(*) FROM gp_drains WHERE app = ?",
                           (app,)).value() >= MAX_DRAINS:
                raise Conflict(f"{app} has {MAX_DRAINS} drains already")
            cur.execute("INSERT INTO gp_drains (app, url_id, url, private_ok, created_by,"
                        " created_at) VALUES (?, ?, ?, ?, ?, ?)",
                        (app, self._url_id(url), self.cipher.encrypt(url.encode()),
                         int(private_ok), created_by, time.time()))

    def remove_drain(self, app: str, url: str) -> bool:
        with self.db.transaction() as cur:
            return cur.execute("DELETE FROM gp_drains WHERE app = ? AND url_id = ?",
                               (app, self._url_id(url))).rowcount > 0

    def drains(self, app: str | None = None) -> list[dict[str, Any]]:
        """``{app, url, private_ok, created_by, created_at}`` of one app, or of all."""
        with self.db.transaction() as cur:
            sql = ("SELECT app, url, private_ok, created_by, created_at FROM gp_drains"
                   + (" WHERE app = ?" if app else "") + " ORDER BY app, created_at")
            rows = cur.execute(sql, (app,) if app else ()).all()
        return [{"app": r[0], "url": self.cipher.decrypt(r[1]).decode(),
                 "private_ok": bool(r[2]), "created_by": r[3], "created_at": r[4]}
                for r in rows]

    def all_drains(self) -> list[dict[str, Any]]:
        return self.drains(None)

    # -- events -------------------------------------------------------------------------

    def record_event(self, actor: str, action: str, app: str | None = None,
                     detail: str = "") -> None:
        with self.db.transaction() as cur:
            row = cur.execute("SELECT uid FROM gp_apps WHERE name = ?", (app,)).one() \
                if app else None
            cur.execute("INSERT INTO gp_events (app, app_uid, actor, action, detail,"
                        " created_at) VALUES (?, ?, ?, ?, ?, ?)",
                        (app, row[0] if row else None, actor, action, detail, time.time()))

    def events(self, app: str | None = None, limit: int = 100,
               apps: Iterable[str] | None = None) -> list[tuple[Any, ...]]:
        """``(created_at, actor, action, app, detail)``, newest first: of the app ``app``
        as it is now (not of an earlier app of that name), of the apps ``apps``, or all."""
        columns = "e.created_at, e.actor, e.action, e.app, e.detail"
        mine = f"SELECT {columns} FROM gp_events e JOIN gp_apps a ON a.name = e.app" \
               " AND a.uid = e.app_uid"
        with self.db.transaction() as cur:
            if app:
                cur.execute(f"{mine} WHERE e.app = ? ORDER BY e.id DESC LIMIT ?", (app, limit))
            elif apps is not None:
                wanted = sorted(set(apps))
                if not wanted:
                    return []
                cur.execute(f"{mine} WHERE e.app IN ({', '.join('?' for _ in wanted)})"
                            " ORDER BY e.id DESC LIMIT ?", (*wanted, limit))
            else:
                cur.execute(f"SELECT {columns} FROM gp_events e ORDER BY e.id DESC LIMIT ?",
                            (limit,))
            return cur.all()

    # -- backups ------------------------------------------------------------------------

    def add_backup(self, snapshot: str, status: str, detail: str, started_at: float,
                   finished_at: float) -> None:
        """Record one backup attempt (``succeeded`` or ``failed``)."""
        with self.db.transaction() as cur:
            cur.execute("INSERT INTO gp_backups (snapshot, status, detail, started_at,"
                        " finished_at) VALUES (?, ?, ?, ?, ?)",
                        (snapshot, status, detail, started_at, finished_at))

    def last_backup(self, status: str | None = None) -> Backup | None:
        """The newest backup attempt, or the newest with ``status``; None when there is
        none."""
        sql = "SELECT snapshot, status, detail, started_at, finished_at FROM gp_backups"
        params: tuple[str, ...] = ()
        if status:
            sql, params = sql + " WHERE status = ?", (status,)
        with self.db.transaction() as cur:
            row = cur.execute(sql + " ORDER BY id DESC LIMIT 1", params).one()
        return Backup(*row) if row else None

    def close(self) -> None:
        self.db.close()


def open_store(database_url: str, secret_key_path: Path) -> Store:
    """Open (and migrate) the store at ``database_url``."""
    store = Store(Database(database_url), Cipher.from_file(secret_key_path))
    store.migrate()
    return store
