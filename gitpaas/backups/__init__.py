"""Backups: one restic snapshot holds everything needed to bring an install back.

A snapshot is taken from ``<data_dir>`` (paths are stored relative to it, so it restores
into any data dir) and holds:

- ``.backup/``: made just before the snapshot and removed after it: ``state.db`` (SQLite's
  online backup API) or ``state.sql`` (a dump when the state is on MySQL), ``repos/``
  (each app's bare repo, hard-linked under the app's lock: git writes new files and
  renames, so the links are a consistent copy), ``mysql/<app>.sql`` and
  ``postgres/<app>.pgdump`` (each app database: ``mysqldump --single-transaction``, or a
  ``pg_dump`` custom-format archive), ``redis/<app>.rdb`` (each app's Redis: a
  ``BGSAVE`` snapshot copied out of its container) and ``gitpaas-backup.json`` (the
  manifest);
- ``secret.key`` (the key of the encrypted config vars), ``gitpaas.yaml``;
- ``storage/`` (the apps' persistent directories) and any mounted directory outside it
  (stored with its absolute path); where the runtime keeps storage in Docker volumes
  (``runtime.volumes``), each volume as ``.backup/volumes/<volume>.tar``, exported
  through the runtime's throwaway container;
- ``edge/certs/`` (the edge's certificates) and ``edge/acme/`` (its ACME account).

``restore.py`` puts them back. Snapshots carry the tag ``gitpaas-<instance>``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sqlite3
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from .. import __version__
from ..errors import GitPaasError, ServiceError
from ..locks import app_lock
from ..secrets import write_private_file
from .restic import Restic, Snapshot

if TYPE_CHECKING:
    from ..platform import Platform
    from ..settings import Settings
    from ..store import App

STAGING = ".backup"
BACKED_UP = ("secret.key", "gitpaas.yaml", "storage", "edge/certs", "edge/acme")
MANIFEST = "gitpaas-backup.json"
FORMAT = 1
# Datastore kinds whose databases a backup dumps, with the dump's file suffix.
DUMPS = {"mysql": "sql", "postgres": "pgdump", "redis": "rdb"}
Progress = Callable[[str], None]
# The backup's manifest (gitpaas-backup.json), a JSON object.
Manifest = dict[str, Any]


def tag(settings: Settings) -> str:
    """The restic tag of this install's snapshots."""
    return f"gitpaas-{settings.instance}"


def restic_for(settings: Settings) -> Restic:
    """The restic client of ``backup_repo`` (``InvalidInput`` when not configured)."""
    return Restic(settings.backup_repo, settings.backup_password_path,
                  settings.data_dir / "cache" / "restic")


def ensure_password(settings: Settings, progress: Progress) -> None:
    """Make the default password file on first use (an operator-set one must exist)."""
    path = settings.backup_password_path
    if settings.backup_password_file or path.exists():
        return
    write_private_file(path, secrets.token_urlsafe(32).encode() + b"\n")
    progress(f"-----> Made the backup password file {path}: keep a copy OFF this machine,"
             " the backups cannot be read without it")


def backup_lock(settings: Settings, what: str) -> AbstractContextManager[float]:
    """One backup (or restore) at a time per data dir: ``Conflict`` when one runs."""
    return app_lock(settings.data_dir / "locks", "_backup", what, 0.0)


def create_backup(platform: Platform, progress: Progress, actor: str = "gitpaas") -> str:
    """Write one snapshot; record it (succeeded or failed) and notify a failure."""
    from ..notify import notify

    settings, store = platform.settings, platform.store
    started = time.time()
    try:
        with backup_lock(settings, f"backups:create by {actor}"):
            snapshot = _create(platform, progress)
    except GitPaasError as exc:
        store.add_backup("", "failed", exc.message, started, time.time())
        notify(platform, "backup-failed", None, exc.message)
        raise
    except Exception as exc:  # noqa: BLE001 - recorded and notified, then re-raised
        store.add_backup("", "failed", f"internal error: {exc}", started, time.time())
        notify(platform, "backup-failed", None, f"internal error: {type(exc).__name__}")
        raise
    store.add_backup(snapshot, "succeeded", "", started, time.time())
    store.record_event(actor, "backups:create", None, snapshot)
    return snapshot


def _create(platform: Platform, progress: Progress) -> str:
    settings = platform.settings
    restic = restic_for(settings)
    ensure_password(settings, progress)
    staging = settings.data_dir / STAGING
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(mode=0o700)
    try:
        manifest = _stage(platform, staging, progress)
        paths = [STAGING, *(p for p in BACKED_UP if (settings.data_dir / p).exists())]
        paths += manifest["external"]
        progress(f"-----> Writing the snapshot to {_shown(settings.backup_repo)}")
        if restic.ensure_repo():
            progress(f"-----> Initialised the restic repository {_shown(settings.backup_repo)}")
        snapshot = restic.backup(paths, settings.data_dir, [tag(settings)])
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    progress(f"-----> Snapshot {snapshot[:8]}: {len(manifest['apps'])} apps")
    restic.forget(tag(settings), settings.backup_keep_daily, settings.backup_keep_weekly)
    return snapshot


def _shown(repo: str) -> str:
    """A repository URL without any password in it."""
    parsed = urlparse(repo)
    if parsed.password:
        return repo.replace(f":{parsed.password}@", ":****@")
    return repo


def _stage(platform: Platform, staging: Path, progress: Progress) -> Manifest:
    settings, store = platform.settings, platform.store
    progress("-----> Backing up the state")
    dump_state(settings.database, staging)
    apps = store.list_apps()
    external: list[str] = []
    for app in apps:
        source = settings.repos_dir / f"{app.name}.git"
        if source.is_dir():
            with platform.lock(app.name, "backups:create", None):
                link_tree(source, staging / "repos" / f"{app.name}.git")
        for datastore in store.datastores(app.name):
            if datastore.kind == "redis":
                dump_app_redis(platform, app.name, staging / dump_path("redis", app.name),
                               progress)
            elif datastore.kind in DUMPS:
                progress(f"-----> Dumping the {datastore.kind} database of {app.name}")
                dump_app_database(platform, datastore.kind, datastore.name,
                                  staging / dump_path(datastore.kind, app.name))
        storage = settings.storage_dir.resolve()
        for mount in store.mounts(app.name):
            path = Path(mount.host_path)
            if storage not in path.parents and path.is_dir():
                external.append(str(path))
    elsewhere: list[dict[str, str]] = []
    volumes = _export_volumes(platform, apps, staging / "volumes", progress, elsewhere)
    manifest = {"format": FORMAT, "gitpaas": __version__, "instance": settings.instance,
                "data_dir": str(settings.data_dir), "created_at": time.time(),
                "schema": store.schema_version(), "apps": [a.name for a in apps],
                "state": "state.sql" if settings.database.startswith("mysql:") else "state.db",
                "external": sorted(set(external)), "volumes": volumes,
                "volumes_elsewhere": elsewhere}
    write_private_file(staging / MANIFEST, json.dumps(manifest, indent=2).encode())
    return manifest


def helper_image(platform: Platform, app: str) -> str | None:
    """The image volume jobs run in: ``storage_helper_image``, else the app's release's."""
    image = getattr(platform.settings, "storage_helper_image", "")
    if image:
        return image
    release = platform.store.current_release(app)
    return release.image if release else None


def _export_volumes(platform: Platform, apps: list[App], target: Path,
                    progress: Progress, elsewhere: list[dict[str, str]]) -> list[dict[str, str]]:
    """Each storage volume of each app as ``<target>/<volume>.tar`` (when the runtime
    keeps storage in volumes); the list of what was exported. On a swarm, an app whose
    storage is pinned to another node is said, and added to ``elsewhere``: its volumes
    are on that node's engine, out of this host's reach (docs/scaling.md)."""
    volumes = getattr(platform.runtime, "volumes", None)
    if volumes is None:
        return []
    node_of = getattr(platform.runtime, "storage_elsewhere", None)
    exported = []
    for app in apps:
        node = node_of(app.name) if node_of is not None else None
        if node:
            progress(f" !     {app.name}: its storage is on node {node}, not in this backup"
                     " (docs/scaling.md)")
            elsewhere.append({"app": app.name, "node": node})
            continue
        for volume in volumes.list(app.name):
            image = helper_image(platform, app.name)
            if image is None:
                progress(f" !     {app.name}: no image to export {volume} with; skipped")
                continue
            progress(f"-----> Exporting the storage volume {volume}")
            target.mkdir(mode=0o700, exist_ok=True)
            path = target / f"{volume}.tar"
            with open(path, "wb") as out:
                os.chmod(path, 0o600)
                for chunk in volumes.export_tar(volume, image):
                    out.write(chunk)
            exported.append({"app": app.name, "name": volume.split(".", 2)[2],
                             "volume": volume})
    return exported


def dump_state(database_url: str, staging: Path) -> None:
    """The state store into ``staging``: SQLite's online backup, or a MySQL dump."""
    if database_url.startswith("sqlite:"):
        source = sqlite3.connect(urlparse(database_url).path, timeout=30)
        target = sqlite3.connect(staging / "state.db")
        try:
            with target:
                source.backup(target)
        except sqlite3.Error as exc:
            raise ServiceError(f"cannot back up the state: {exc}") from exc
        finally:
            target.close()
            source.close()
        os.chmod(staging / "state.db", 0o600)
        return
    from ..datastores import mysql

    with open(staging / "state.sql", "w", encoding="utf-8") as out:
        os.chmod(staging / "state.sql", 0o600)
        mysql.dump(mysql.Server(database_url).admin, urlparse(database_url).path.lstrip("/"),
                   out.write)


def dump_path(kind: str, app: str) -> str:
    """Where an app database's dump goes in the staging dir (and comes back from)."""
    return f"{kind}/{app}.{DUMPS[kind]}"


def dump_app_database(platform: Platform, kind: str, database: str, target: Path) -> None:
    """A dump of one app database into ``target`` (0600): ``mysqldump``, or a
    ``pg_dump`` custom-format archive."""
    target.parent.mkdir(mode=0o700, exist_ok=True)
    if kind == "mysql":
        with open(target, "w", encoding="utf-8") as out:
            os.chmod(target, 0o600)
            platform.mysql.export(database, out.write)
        return
    with open(target, "wb") as out:
        os.chmod(target, 0o600)
        platform.postgres.export(database, out.write)


def dump_app_redis(platform: Platform, app: str, target: Path, progress: Progress) -> None:
    """A snapshot of the app's Redis into ``target`` (0600), with the password of its
    REDIS_URL (a Redis whose REDIS_URL was unset is skipped, with a warning)."""
    from ..datastores import redis

    creds = redis.credentials_from_config(platform.store.get_config(app))
    if creds is None:
        progress(f" !     {app}: REDIS_URL is not in its config vars; its Redis is not in"
                 " this backup")
        return
    progress(f"-----> Dumping the Redis of {app}")
    target.parent.mkdir(mode=0o700, exist_ok=True)
    with open(target, "wb") as out:
        os.chmod(target, 0o600)
        platform.redis_stores.export_rdb(app, creds.password, out.write)


def link_tree(source: Path, target: Path) -> None:
    """A copy of ``source`` at ``target`` made of hard links (copies across devices)."""
    for root, _dirs, files in os.walk(source):
        here = target / Path(root).relative_to(source)
        here.mkdir(parents=True, exist_ok=True)
        for name in files:
            src = Path(root) / name
            try:
                os.link(src, here / name, follow_symlinks=False)
            except OSError:
                shutil.copy2(src, here / name, follow_symlinks=False)


def list_backups(settings: Settings) -> list[Snapshot]:
    """This install's snapshots, oldest first: id, time, host, paths."""
    snaps = restic_for(settings).snapshots(tag(settings))
    return [{"id": s.get("id", ""), "short_id": s.get("short_id", ""),
             "time": s.get("time", ""), "hostname": s.get("hostname", ""),
             "paths": s.get("paths", [])} for s in snaps]
