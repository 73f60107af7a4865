"""The schema, written once for SQLite and MySQL. ``{blob}`` and ``{autoinc}`` differ.

``TABLES`` is schema version 1. Every later change is one numbered step in ``MIGRATIONS``
(never edit a step that has shipped: add the next one). ``VERSION`` is the newest step.
"""

from __future__ import annotations

TABLES = [
    """CREATE TABLE IF NOT EXISTS gp_keys (
        name VARCHAR(64) NOT NULL PRIMARY KEY,
        fingerprint VARCHAR(128) NOT NULL UNIQUE,
        public_key TEXT NOT NULL,
        is_admin INTEGER NOT NULL DEFAULT 0,
        created_at DOUBLE NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS gp_apps (
        name VARCHAR(30) NOT NULL PRIMARY KEY,
        owner VARCHAR(64) NOT NULL,
        deploy_branch VARCHAR(200) NOT NULL,
        buildpack VARCHAR(30),
        current_version INTEGER,
        created_at DOUBLE NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS gp_config (
        app VARCHAR(30) NOT NULL,
        name VARCHAR(128) NOT NULL,
        value {blob} NOT NULL,
        PRIMARY KEY (app, name))""",
    """CREATE TABLE IF NOT EXISTS gp_releases (
        app VARCHAR(30) NOT NULL,
        version INTEGER NOT NULL,
        image VARCHAR(255) NOT NULL,
        commit_sha VARCHAR(64) NOT NULL,
        config {blob} NOT NULL,
        processes TEXT NOT NULL,
        description TEXT NOT NULL,
        created_by VARCHAR(64) NOT NULL,
        created_at DOUBLE NOT NULL,
        status VARCHAR(16) NOT NULL,
        extra TEXT NOT NULL,
        PRIMARY KEY (app, version))""",
    """CREATE TABLE IF NOT EXISTS gp_formation (
        app VARCHAR(30) NOT NULL,
        process VARCHAR(30) NOT NULL,
        replicas INTEGER NOT NULL,
        PRIMARY KEY (app, process))""",
    """CREATE TABLE IF NOT EXISTS gp_domains (
        host VARCHAR(253) NOT NULL PRIMARY KEY,
        app VARCHAR(30) NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS gp_shares (
        app VARCHAR(30) NOT NULL,
        key_name VARCHAR(64) NOT NULL,
        PRIMARY KEY (app, key_name))""",
    """CREATE TABLE IF NOT EXISTS gp_events (
        id {autoinc},
        app VARCHAR(30),
        actor VARCHAR(64) NOT NULL,
        action VARCHAR(64) NOT NULL,
        detail TEXT NOT NULL,
        created_at DOUBLE NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS gp_resources (
        app VARCHAR(30) NOT NULL,
        process VARCHAR(30) NOT NULL,
        memory VARCHAR(16) NOT NULL,
        cpus DOUBLE NOT NULL,
        PRIMARY KEY (app, process))""",
    """CREATE TABLE IF NOT EXISTS gp_datastores (
        app VARCHAR(30) NOT NULL,
        kind VARCHAR(16) NOT NULL,
        name VARCHAR(64) NOT NULL,
        db_user VARCHAR(80) NOT NULL,
        created_at DOUBLE NOT NULL,
        PRIMARY KEY (app, kind))""",
    """CREATE TABLE IF NOT EXISTS gp_mounts (
        app VARCHAR(30) NOT NULL,
        container_path VARCHAR(255) NOT NULL,
        host_path VARCHAR(1024) NOT NULL,
        PRIMARY KEY (app, container_path))""",
    """CREATE TABLE IF NOT EXISTS gp_meta (
        name VARCHAR(64) NOT NULL PRIMARY KEY,
        value TEXT NOT NULL)""",
]

# (version, statements): applied in order, each step in one transaction with its version.
# On MySQL, DDL commits implicitly: write each step so that running it again after a
# partial failure is harmless (IF NOT EXISTS, or a check in Store.migrate).
MIGRATIONS: list[tuple[int, list[str]]] = [
    # Deploy keys: a key limited to pushing one app (NULL: an ordinary key).
    (2, ["ALTER TABLE gp_keys ADD COLUMN deploy_app VARCHAR(30)"]),
    # Cron jobs: the slot each job last handled and its last run.
    (3, ["""CREATE TABLE IF NOT EXISTS gp_cron (
        app VARCHAR(30) NOT NULL,
        job_id VARCHAR(16) NOT NULL,
        command TEXT NOT NULL,
        schedule VARCHAR(100) NOT NULL,
        last_slot DOUBLE,
        last_started DOUBLE,
        last_status VARCHAR(200),
        last_duration DOUBLE,
        PRIMARY KEY (app, job_id))"""]),
    # Log drains: the URL is encrypted (it may hold a token); url_id is its hash.
    (4, ["""CREATE TABLE IF NOT EXISTS gp_drains (
        app VARCHAR(30) NOT NULL,
        url_id VARCHAR(64) NOT NULL,
        url {blob} NOT NULL,
        private_ok INTEGER NOT NULL,
        created_by VARCHAR(64) NOT NULL,
        created_at DOUBLE NOT NULL,
        PRIMARY KEY (app, url_id))"""]),
    # per-app edge settings (edge:set): client_max_body_size, proxy timeouts, https_redirect
    (5, ["""CREATE TABLE IF NOT EXISTS gp_edge (
        app VARCHAR(30) NOT NULL,
        name VARCHAR(64) NOT NULL,
        value VARCHAR(255) NOT NULL,
        PRIMARY KEY (app, name))"""]),
    # App identity: events belong to one incarnation of a name (issue 11, finding 9). Apps
    # that exist get their name as uid (new ones get 32 hex digits, longer than any name),
    # and take the events recorded since they were created; older events keep NULL.
    (6, ["ALTER TABLE gp_apps ADD COLUMN uid VARCHAR(36)",
         "ALTER TABLE gp_events ADD COLUMN app_uid VARCHAR(36)",
         "UPDATE gp_apps SET uid = name WHERE uid IS NULL",
         """UPDATE gp_events SET app_uid = (SELECT uid FROM gp_apps
                WHERE gp_apps.name = gp_events.app
                AND gp_apps.created_at <= gp_events.created_at)
            WHERE app_uid IS NULL"""]),
    # 7: backup bookkeeping (backups:create, the schedule in serve, doctor's backup age).
    (7, ["""CREATE TABLE IF NOT EXISTS gp_backups (
        id {autoinc},
        snapshot VARCHAR(80) NOT NULL,
        status VARCHAR(16) NOT NULL,
        detail TEXT NOT NULL,
        started_at DOUBLE NOT NULL,
        finished_at DOUBLE NOT NULL)"""]),
    # 8: which Docker network an app uses when it is not ``<instance>.<app>``: a spare
    # made ahead (issue 17, scale) and claimed by a new app. Keyed by the app's uid, so a
    # later app of the same name never inherits it; a network belongs to one app only.
    (8, ["""CREATE TABLE IF NOT EXISTS gp_app_networks (
        network VARCHAR(200) NOT NULL PRIMARY KEY,
        app_uid VARCHAR(36) NOT NULL UNIQUE,
        app VARCHAR(30) NOT NULL,
        claimed_at DOUBLE NOT NULL)"""]),
]

VERSION = max([1, *(version for version, _ in MIGRATIONS)])

DIALECTS = {
    "sqlite": {"blob": "BLOB", "autoinc": "INTEGER PRIMARY KEY AUTOINCREMENT"},
    "mysql": {"blob": "LONGBLOB", "autoinc": "BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY"},
}


def statements(dialect: str) -> list[str]:
    """The CREATE statements of version 1 for ``dialect``."""
    return [sql.format(**DIALECTS[dialect]) for sql in TABLES]


def steps(dialect: str, after: int) -> list[tuple[int, list[str]]]:
    """The migration steps newer than version ``after``, in order, for ``dialect``."""
    return [(version, [sql.format(**DIALECTS[dialect]) for sql in sqls])
            for version, sqls in sorted(MIGRATIONS) if version > after]
