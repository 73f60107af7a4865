"""Datastores attached to apps: MySQL (``mysql.py``) and PostgreSQL (``postgres.py``)
databases, and persistent storage."""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..platform import Platform


def destroy_for_app(platform: Platform, app: str) -> None:
    """Remove every datastore of ``app`` (called by ``apps:destroy``): its databases and
    users, its mount records and its storage directory ``<data_dir>/storage/<app>/``."""
    store = platform.store
    for datastore in store.datastores(app):
        if datastore.kind == "mysql":
            platform.mysql.destroy(datastore.name, datastore.user)
        elif datastore.kind == "postgres":
            platform.postgres.destroy(datastore.name, datastore.user)
        elif datastore.kind == "redis":
            platform.redis_stores.destroy(app)
        store.remove_datastore(app, datastore.kind)
    for mount in store.mounts(app):
        store.remove_mount(app, mount.host_path, mount.container_path)
    shutil.rmtree(platform.settings.storage_dir / app, ignore_errors=True)
