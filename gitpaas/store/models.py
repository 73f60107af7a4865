"""Plain records the store hands out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Key:
    """A registered SSH public key."""

    name: str
    fingerprint: str
    public_key: str
    is_admin: bool
    created_at: float
    # A deploy key may push to this one app and read its releases and logs, nothing else.
    deploy_app: str | None = None


@dataclass(frozen=True)
class App:
    """An application."""

    name: str
    owner: str
    deploy_branch: str
    buildpack: str | None
    current_version: int | None
    created_at: float


@dataclass(frozen=True)
class Release:
    """One release of an app: an image plus a config snapshot."""

    app: str
    version: int
    image: str
    commit: str
    config: dict[str, str]
    processes: dict[str, str]
    description: str
    created_by: str
    created_at: float
    status: str
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Datastore:
    """A database attached to an app (its password lives only in the app's config)."""

    app: str
    kind: str
    name: str
    user: str
    created_at: float


@dataclass(frozen=True)
class Mount:
    """A persistent host directory bound into an app's containers."""

    app: str
    host_path: str
    container_path: str


@dataclass(frozen=True)
class Backup:
    """One backup attempt: ``status`` is ``succeeded`` or ``failed`` (``detail`` says why)."""

    snapshot: str
    status: str
    detail: str
    started_at: float
    finished_at: float
