"""Datastores attached to apps: MySQL (``mysql.py``) and PostgreSQL (``postgres.py``)
databases, and persistent storage."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..platform import Platform

MASK = "****"


# Config vars a datastore sets whose URL holds a password (mysql, postgres, redis).
SECRET_URL_KEYS = ("DATABASE_URL", "REDIS_URL")


def mask_secrets(config: Mapping[str, str]) -> dict[str, str]:
    """``config`` with a datastore's password masked as ``mysql:info``, ``postgres:info``
    and ``redis:info`` show it: ``DB_PASSWORD`` is ``****``, and so is the password part
    of ``DATABASE_URL`` and ``REDIS_URL`` (any scheme)."""
    masked = dict(config)
    if masked.get("DB_PASSWORD"):
        masked["DB_PASSWORD"] = MASK
    for key in SECRET_URL_KEYS:
        if key in masked:
            masked[key] = _mask_url(masked[key])
    return masked


def _mask_url(url: str) -> str:
    """``scheme://user:****@rest`` for ``scheme://user:password@rest``; else ``url``."""
    at = url.rfind("@")
    scheme_end = url.find("://")
    if at > scheme_end >= 0:
        userinfo = url[scheme_end + 3:at]
        if ":" in userinfo:
            user = userinfo.split(":", 1)[0]
            return f"{url[:scheme_end + 3]}{user}:{MASK}{url[at:]}"
    return url


def destroy_for_app(platform: Platform, app: str) -> None:
    """Remove every datastore of ``app`` (called by ``apps:destroy``): its databases and
    users, its mount records, its storage volumes and its legacy storage directory
    ``<data_dir>/storage/<app>/`` (see ``runtime.volumes``)."""
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
    platform.runtime.volumes.remove_app(app)
    shutil.rmtree(platform.settings.storage_dir / app, ignore_errors=True)
