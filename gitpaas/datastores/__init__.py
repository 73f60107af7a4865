"""Datastores attached to apps: MySQL (``mysql.py``) and PostgreSQL (``postgres.py``)
databases, and persistent storage."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from typing import Any

MASK = "****"


def mask_secrets(config: Mapping[str, str]) -> dict[str, str]:
    """``config`` with a datastore's password masked as ``mysql:info`` and
    ``postgres:info`` show it: ``DB_PASSWORD`` is ``****``, and so is the password part
    of ``DATABASE_URL`` (any scheme)."""
    masked = dict(config)
    if masked.get("DB_PASSWORD"):
        masked["DB_PASSWORD"] = MASK
    url = masked.get("DATABASE_URL", "")
    at = url.rfind("@")
    scheme_end = url.find("://")
    if at > scheme_end >= 0:
        userinfo = url[scheme_end + 3:at]
        if ":" in userinfo:
            user = userinfo.split(":", 1)[0]
            masked["DATABASE_URL"] = f"{url[:scheme_end + 3]}{user}:{MASK}{url[at:]}"
    return masked


def destroy_for_app(platform: Any, app: str) -> None:
    """Remove every datastore of ``app`` (called by ``apps:destroy``): its databases and
    users, its mount records and its storage directory ``<data_dir>/storage/<app>/``."""
    store = platform.store
    for datastore in store.datastores(app):
        if datastore.kind == "mysql":
            platform.mysql.destroy(datastore.name, datastore.user)
        elif datastore.kind == "postgres":
            platform.postgres.destroy(datastore.name, datastore.user)
        store.remove_datastore(app, datastore.kind)
    for mount in store.mounts(app):
        store.remove_mount(app, mount.host_path, mount.container_path)
    shutil.rmtree(platform.settings.storage_dir / app, ignore_errors=True)
