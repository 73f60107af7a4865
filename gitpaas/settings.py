"""Settings: one frozen dataclass from defaults, a YAML file, ``GITPAAS_*`` and flags.

Precedence, lowest first: defaults, the YAML file (``GITPAAS_CONFIG`` or
``<data_dir>/gitpaas.yaml`` when present), environment variables, explicit overrides.
The environment variable of a field is ``GITPAAS_`` + its upper-case name.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from . import names
from .errors import InvalidInput


@dataclass(frozen=True)
class Settings:
    """Everything that can be configured. Field names are the YAML keys."""

    data_dir: Path = Path("/var/lib/gitpaas")
    ssh_listen: str = "0.0.0.0:2222"
    http_listen: str = "0.0.0.0:8080"
    domain: str = "paas.localhost"
    redis_url: str = "redis://127.0.0.1:6379/0"
    database_url: str = ""
    instance: str = "gitpaas"
    mysql_admin_url: str = ""
    # How app containers reach MariaDB (the docker0 gateway; MariaDB listens there and on
    # loopback only). Port 0: the port of mysql_admin_url.
    mysql_app_host: str = "172.17.0.1"
    mysql_app_port: int = 0
    # The host part of app database users ('%': any address that reaches the server).
    mysql_user_host: str = "%"
    # Where postgres:create makes databases (a role with CREATEDB CREATEROLE), and how
    # app containers reach that server (port 0: the port of postgres_admin_url).
    postgres_admin_url: str = ""
    postgres_app_host: str = "172.17.0.1"
    postgres_app_port: int = 0
    # Absolute directories, besides <data_dir>/storage/<app>/, whose subdirectories
    # storage:mount may bind into containers (comma-separated; admins only).
    storage_roots: str = ""
    # Address published container ports bind to and the router connects to.
    container_host: str = "127.0.0.1"
    # Seconds: the web check of a new release, draining and stopping the old one.
    health_timeout: float = 30.0
    drain_seconds: float = 1.0
    stop_timeout: int = 10
    # Whether a registered key may create an app by pushing to it.
    create_on_push: bool = True
    deploy_branch: str = "main"
    hooks_dir: str = ""
    lock_timeout: float = 300.0
    # Seconds a git client may send nothing while the server waits for its data.
    git_idle_timeout: float = 300.0
    # Seconds between passes of the reconciler in ``gitpaas serve`` (0: only at start-up).
    reconcile_interval: float = 5.0
    keep_releases: int = 5
    max_context_bytes: int = 512 * 1024 * 1024
    max_context_files: int = 50_000
    max_push_bytes: int = 1024 * 1024 * 1024
    # Largest object (file, or delta result) a push may hold: each is inflated in memory.
    max_object_bytes: int = 100 * 1024 * 1024
    # Limits of every container unless resources:set says otherwise ("" = none).
    default_memory: str = "512m"
    default_cpus: float = 0.0
    # Extra CA certificates (PEM file) trusted by syslog+tls:// and https:// log drains.
    drain_ca_file: str = ""
    # Seconds between checks for due cron jobs (app.json "cron") in ``gitpaas serve``.
    cron_interval: float = 5.0
    # Seconds a ``run`` command (or a cron job) may last before its container is killed.
    run_timeout: float = 3600.0
    # Seconds a process without a port must stay up for its release to count as healthy.
    process_check_seconds: float = 2.0
    # Where the shipped post-deploy webhook hook posts deploy events ("" = nowhere).
    webhook_url: str = ""
    # Image name of each buildpack's base, by buildpack name (see images/).
    base_images: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # Router (gitpaas.router, see docs/router.md). Durations in seconds.
    router_workers: int = 1
    # host:port of the Prometheus /metrics page; empty: none. Worker i serves port + i.
    router_admin_listen: str = ""
    # How long a failing backend stays in dead:<host> (Hipache's deadBackendTTL).
    router_dead_ttl: float = 30.0
    # Fallback expiry of cached routes; pub/sub invalidation is the main path.
    router_cache_ttl: float = 60.0
    router_retries: int = 3
    router_connect_timeout: float = 5.0
    router_header_timeout: float = 10.0
    router_idle_timeout: float = 60.0
    router_backend_timeout: float = 300.0
    router_max_header_bytes: int = 65536
    # One line per request on logger gitpaas.router.access (at INFO).
    router_access_log: bool = True
    # TLS: <dir>/<domain>.crt and <domain>.key, chosen by SNI; empty https_listen: no TLS.
    router_https_listen: str = ""
    router_tls_dir: str = ""
    router_https_redirect: bool = False

    @property
    def routes_prefix(self) -> str:
        """Prefix of every Redis key this install writes."""
        return f"{self.instance}:"

    @property
    def database(self) -> str:
        """The state store URL (SQLite in the data dir unless set)."""
        return self.database_url or f"sqlite:///{self.data_dir / 'state.db'}"

    @property
    def repos_dir(self) -> Path:
        return self.data_dir / "repos"

    @property
    def host_key_path(self) -> Path:
        return self.data_dir / "ssh_host_ecdsa_key"

    @property
    def storage_dir(self) -> Path:
        """Where apps' persistent directories live: ``<data_dir>/storage/<app>/``."""
        return self.data_dir / "storage"

    @property
    def secret_key_path(self) -> Path:
        return self.data_dir / "secret.key"

    def listen(self, which: str) -> tuple[str, int]:
        """Split ``ssh_listen`` or ``http_listen`` into (host, port)."""
        value = getattr(self, f"{which}_listen")
        host, _, port = value.rpartition(":")
        return host.strip("[]") or "0.0.0.0", int(port)


def _coerce(name: str, raw: Any, kind: Any) -> Any:
    if raw is None:
        return None
    try:
        if kind is Path or kind == "Path":
            return Path(raw)
        if kind is bool or kind == "bool":
            if isinstance(raw, bool):
                return raw
            return str(raw).strip().lower() in {"1", "true", "yes", "on"}
        if kind is int or kind == "int":
            return int(raw)
        if kind is float or kind == "float":
            return float(raw)
        if "Mapping" in str(kind):
            if isinstance(raw, str):
                raw = yaml.safe_load(raw) or {}
            return {str(k): str(v) for k, v in dict(raw).items()}
        return str(raw)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"invalid setting {name}={raw!r}: {exc}") from exc


def load(
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    config_file: str | os.PathLike[str] | None = None,
) -> Settings:
    """Build the settings from defaults, a YAML file, the environment and ``overrides``."""
    env = os.environ if environ is None else environ
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    values: dict[str, Any] = {}
    data_dir = overrides.get("data_dir") or env.get("GITPAAS_DATA_DIR") or Settings.data_dir
    path = config_file or env.get("GITPAAS_CONFIG")
    if not path and (Path(data_dir) / "gitpaas.yaml").is_file():
        path = Path(data_dir) / "gitpaas.yaml"
    if path:
        try:
            loaded = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise InvalidInput(f"cannot read config file {path}: {exc}") from exc
        if not isinstance(loaded, dict):
            raise InvalidInput(f"config file {path} must hold a mapping")
        values.update(loaded)
    known = {f.name: f.type for f in fields(Settings)}
    for name in known:
        raw = env.get(f"GITPAAS_{name.upper()}")
        if raw is not None and raw != "":
            values[name] = raw
    values.update(overrides)
    unknown = set(values) - set(known)
    if unknown:
        raise InvalidInput(f"unknown setting(s): {', '.join(sorted(unknown))}")
    coerced = {k: _coerce(k, v, known[k]) for k, v in values.items()}
    settings = Settings(**coerced)
    names.instance_name(settings.instance)
    names.hostname(settings.domain)
    return settings
