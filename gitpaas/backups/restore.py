"""``backups:restore``: a snapshot back into this machine's data dir, then every app back.

Order: the files (state, secret key, repos, storage, certificates), the state's schema
migrated, each app database recreated with the password its restored config holds and
its dump loaded, the image of each current release rebuilt from the repo when Docker lacks
it, then one reconciler pass starts the containers and writes the routes. ``gitpaas
serve`` must be stopped meanwhile; a data dir that holds apps is refused unless
``force``. The settings file of this machine is kept (the backed-up one is written next
to it as ``gitpaas.yaml.from-backup`` when they differ).
"""

from __future__ import annotations

import json
import os
import shutil
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from ..errors import Conflict, GitPaasError, UserError
from ..locks import app_lock
from . import DUMPS, MANIFEST, STAGING, Manifest, Progress, backup_lock, dump_path, restic_for, tag

if TYPE_CHECKING:
    from ..platform import Platform
    from ..settings import Settings
    from ..store import Datastore

RESTORE_DIR = ".restore"


def serve_lock(settings: Settings, what: str,
               timeout: float = 0.0) -> AbstractContextManager[float]:
    """Held by ``gitpaas serve`` for its lifetime; a restore takes it to be alone."""
    return app_lock(settings.data_dir / "locks", "_serve", what, timeout)


def restore_backup(platform: Platform, snapshot: str, progress: Progress,
                   force: bool = False) -> list[str]:
    """Restore ``snapshot`` (an id or ``latest``); return the restored apps' names."""
    settings = platform.settings
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        with serve_lock(settings, "backups:restore"):
            pass
    except Conflict:
        raise UserError("gitpaas serve is running on this data dir: stop it first"
                        " (systemctl stop gitpaas)") from None
    with serve_lock(settings, "backups:restore"), backup_lock(settings, "backups:restore"):
        _refuse_if_in_use(platform, force)
        target = settings.data_dir / RESTORE_DIR
        shutil.rmtree(target, ignore_errors=True)
        progress(f"-----> Restoring snapshot {snapshot} from {settings.backup_repo}")
        restic_for(settings).restore(snapshot, tag(settings), target)
        try:
            root, manifest = _find_manifest(target)
            _put_files(settings, target, root, manifest, progress)
        finally:
            shutil.rmtree(target, ignore_errors=True)
        from ..platform import Platform

        fresh = Platform(settings)  # the restored state, secret key and repos
        _fix_mount_paths(fresh, manifest)
        _databases(fresh, progress)
        _images(fresh, progress)
        _volumes(fresh, manifest, progress)
        _start(fresh, progress)
        fresh.store.record_event("local", "backups:restore", None, snapshot)
        return list(manifest.get("apps", []))


def _refuse_if_in_use(platform: Platform, force: bool) -> None:
    settings = platform.settings
    exists = settings.database.startswith("mysql:") or (settings.data_dir / "state.db").exists()
    if not exists:
        return
    apps = platform.store.list_apps()
    platform.store.close()
    platform.__dict__.pop("store", None)
    if apps and not force:
        raise UserError(f"this install has {len(apps)} apps already: restore onto a fresh"
                        " install, or add --force to replace them")


def _find_manifest(target: Path) -> tuple[Path, Manifest]:
    """The restored ``.backup`` dir and its manifest (paths relative to the data dir;
    a restic that stored absolute paths is handled by looking one data dir deeper)."""
    first = target / STAGING / MANIFEST
    candidates = [first] if first.is_file() else target.glob(f"**/{STAGING}/{MANIFEST}")
    for path in candidates:
        if path.is_file():
            manifest = json.loads(path.read_text())
            return path.parent.parent, manifest
    raise UserError("the snapshot holds no gitpaas backup manifest: not a gitpaas backup?")


def _replace(source: Path, dest: Path) -> None:
    """Move ``source`` to ``dest``, removing what was there."""
    if not source.exists():
        return
    if dest.is_dir() and not dest.is_symlink():
        shutil.rmtree(dest)
    elif dest.exists() or dest.is_symlink():
        dest.unlink()
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(source), str(dest))


def _put_files(settings: Settings, target: Path, root: Path, manifest: Manifest,
               progress: Progress) -> None:
    data = settings.data_dir
    staged = root / STAGING
    progress("-----> Restoring the state, the secret key, repos, storage and certificates")
    if manifest.get("state") == "state.sql":
        _load_state_dump(settings.database, staged / "state.sql")
    else:
        if settings.database.startswith("mysql:"):
            raise UserError("the backup's state is SQLite but this install's state is on"
                            " MySQL (database_url): restore onto the same kind of store")
        state = Path(urlparse(settings.database).path)
        for suffix in ("-wal", "-shm"):
            Path(f"{state}{suffix}").unlink(missing_ok=True)
        _replace(staged / "state.db", state)
    _replace(root / "secret.key", data / "secret.key")
    os.chmod(data / "secret.key", 0o600)
    _replace(staged / "repos", settings.repos_dir)
    _replace(root / "storage", settings.storage_dir)
    _replace(root / "edge" / "certs", data / "edge" / "certs")
    _replace(root / "edge" / "acme", data / "edge" / "acme")
    backed_up = root / "gitpaas.yaml"
    if backed_up.is_file():
        mine = data / "gitpaas.yaml"
        if not mine.exists():
            _replace(backed_up, mine)
        elif mine.read_bytes() != backed_up.read_bytes():
            _replace(backed_up, data / "gitpaas.yaml.from-backup")
            progress(f"-----> Kept this machine's {mine}; the backed-up settings are in"
                     " gitpaas.yaml.from-backup")
    for path in manifest.get("external", []):
        source = target / path.lstrip("/")
        if source.is_dir():
            shutil.copytree(source, path, symlinks=True, dirs_exist_ok=True)
    (data / "dumps" / "restore").mkdir(mode=0o700, parents=True, exist_ok=True)
    for kind in DUMPS:
        _replace(staged / kind, data / "dumps" / "restore" / kind)
    _replace(staged / "volumes", data / "dumps" / "volumes")


def _load_state_dump(database_url: str, dump: Path) -> None:
    if not database_url.startswith("mysql:"):
        raise UserError("the backup's state is on MySQL: set database_url to an empty MySQL"
                        " database before restoring")
    from ..datastores import mysql

    with open(dump, "rb") as stdin:
        mysql.load(mysql.Server(database_url).admin, urlparse(database_url).path.lstrip("/"),
                   stdin)


def _fix_mount_paths(platform: Platform, manifest: Manifest) -> None:
    """Mounts inside the old data dir's storage point into this data dir's."""
    old = Path(manifest.get("data_dir", "")) / "storage"
    new = platform.settings.storage_dir
    if old == new:
        return
    store = platform.store
    for app in store.list_apps():
        for mount in store.mounts(app.name):
            path = Path(mount.host_path)
            if old in path.parents:
                store.remove_mount(app.name, mount.host_path, mount.container_path)
                store.add_mount(app.name, str(new / path.relative_to(old)),
                                mount.container_path)


def _databases(platform: Platform, progress: Progress) -> None:
    """Each app database recreated with the password in the app's restored config vars,
    its dump loaded as the app's own user."""
    dumps = platform.settings.data_dir / "dumps" / "restore"
    store = platform.store
    try:
        for app in store.list_apps():
            for datastore in store.datastores(app.name):
                if datastore.kind == "redis":
                    _redis(platform, app.name, dumps, progress)
                elif datastore.kind in DUMPS:
                    _database(platform, app.name, datastore, dumps, progress)
                else:
                    progress(f" !     {app.name}: its {datastore.kind} datastore is not in"
                             f" backups: {datastore.kind}:destroy and {datastore.kind}:create")
    finally:
        shutil.rmtree(dumps, ignore_errors=True)


def _database(platform: Platform, app: str, datastore: Datastore, dumps: Path,
              progress: Progress) -> None:
    from ..datastores import mysql, postgres

    kind = datastore.kind
    module, client = (mysql, platform.mysql) if kind == "mysql" else \
        (postgres, platform.postgres)
    creds = module.credentials_from_config(platform.store.get_config(app))
    if creds is None:
        progress(f" !     {app}: no database credentials in its config vars; its {kind}"
                 " database is not restored")
        return
    progress(f"-----> Restoring the {kind} database of {app}")
    client.recreate(datastore.name, datastore.user, creds.password)
    dump = dumps / dump_path(kind, app)
    if dump.is_file() and dump.stat().st_size:
        with open(dump, "rb") as stdin:
            client.import_(module.Credentials(creds.host, creds.port, datastore.name,
                                              datastore.user, creds.password), stdin)


def _redis(platform: Platform, app: str, dumps: Path, progress: Progress) -> None:
    """The app's Redis started anew with the password of its restored REDIS_URL and the
    data of its snapshot (empty when the backup has none)."""
    from ..datastores import redis

    creds = redis.credentials_from_config(platform.store.get_config(app))
    if creds is None:
        progress(f" !     {app}: no REDIS_URL in its config vars; its Redis is not restored")
        return
    progress(f"-----> Restoring the Redis of {app}")
    dump = dumps / dump_path("redis", app)
    if not dump.is_file():
        progress(f" !     {app}: the backup holds no snapshot of its Redis: started empty")
        platform.redis_stores.restore(app, creds.password, None)
        return
    with open(dump, "rb") as rdb:
        platform.redis_stores.restore(app, creds.password, rdb)


def _images(platform: Platform, progress: Progress) -> None:
    import docker.errors

    store, client = platform.store, platform.docker
    for app in store.list_apps():
        release = store.current_release(app.name)
        if release is None:
            continue
        try:
            client.images.get(release.image)
            continue
        except docker.errors.ImageNotFound:
            pass
        try:
            platform.deployer.rebuild_image(app.name, platform.repo(app), release, progress)
        except GitPaasError as exc:
            progress(f" !     {app.name}: cannot rebuild {release.image}: {exc.message}")


def _volumes(platform: Platform, manifest: Manifest, progress: Progress) -> None:
    """Storage volumes back from their tar exports (runtimes that keep storage in
    volumes), through the runtime's throwaway container."""
    from . import helper_image

    dumps = platform.settings.data_dir / "dumps" / "volumes"
    for entry in manifest.get("volumes_elsewhere", []):
        progress(f" !     {entry['app']}: its storage was on node {entry['node']}, not in"
                 " this snapshot: restore it there by hand")
    try:
        volumes = getattr(platform.runtime, "volumes", None)
        for entry in manifest.get("volumes", []):
            path = dumps / f"{entry['volume']}.tar"
            image = helper_image(platform, entry["app"])
            if volumes is None or image is None or not path.is_file():
                progress(f" !     {entry['app']}: storage volume {entry['volume']} not restored")
                continue
            progress(f"-----> Restoring the storage volume {entry['volume']}")
            volume = volumes.ensure(entry["app"], entry["name"])
            with open(path, "rb") as data:
                volumes.import_tar(volume, image, data)
    finally:
        shutil.rmtree(dumps, ignore_errors=True)


def _start(platform: Platform, progress: Progress) -> None:
    from ..reconcile import Reconciler

    progress("-----> Starting the apps")
    report = Reconciler(platform).start_up()
    for error in report.errors:
        progress(f" !     {error}")
