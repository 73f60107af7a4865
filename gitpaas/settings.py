"""Settings: one frozen dataclass from defaults, a YAML file, ``GITPAAS_*`` and flags.

Precedence, lowest first: defaults, the YAML file (``GITPAAS_CONFIG`` or
``<data_dir>/gitpaas.yaml`` when present), environment variables, explicit overrides.
The environment variable of a field is ``GITPAAS_`` + its upper-case name.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from . import names
from .errors import InvalidInput
from .ssh.limits import Startups


@dataclass(frozen=True)
class Settings:
    """Everything that can be configured. Field names are the YAML keys."""

    data_dir: Path = Path("/var/lib/gitpaas")
    ssh_listen: str = "0.0.0.0:2222"
    # SSH limits (docs/security.md). Connections at once, in all and from one source (an
    # IPv4 address or an IPv6 /64); 0: no cap.
    ssh_max_connections: int = 256
    ssh_max_connections_per_source: int = 32
    # New connections a second from one source before the key exchange (token bucket;
    # 0: no throttle), and how many may come at once before the next ones wait.
    ssh_rate_per_source: float = 8.0
    ssh_burst_per_source: int = 12
    # Seconds a connection has to authenticate and open its session.
    ssh_preauth_timeout: float = 30.0
    # OpenSSH's MaxStartups START:RATE:FULL across all sources: with START connections not
    # yet authenticated, refuse a new one with RATE % probability, rising to 100 % at FULL
    # ("0": off). Authenticated connections do not count. Roomier than OpenSSH's 10:30:100:
    # CI jobs push many at once, and pre-auth work waits for idle CPU (ssh/priority.py).
    ssh_max_startups: str = "64:30:192"
    http_listen: str = "0.0.0.0:8080"
    domain: str = "paas.localhost"
    # The server's own host names besides ``domain`` and the machine's host name
    # (comma-separated): only admins may give them to an app (domains:add).
    server_names: str = ""
    # What users are told (git remotes, app URLs, help; see ``addresses``): the SSH host
    # and port clients connect to ("" : the domain; 0: ssh_listen's port) and the edge's
    # public scheme (http or https) and port (0: http_listen's, or the https listener's).
    ssh_public_host: str = ""
    ssh_public_port: int = 0
    public_scheme: str = "http"
    public_port: int = 0
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
    # Each app's own Redis (redis:create): its maxmemory, and the container's memory limit.
    redis_maxmemory: str = "128mb"
    redis_memory: str = "256m"
    # Absolute directories whose subdirectories an admin's storage:mount may bind into
    # containers by host path (comma-separated; admins only). Tenants get volumes.
    storage_roots: str = ""
    # Local image whose tar and cp read and write storage volumes in throwaway containers
    # (the move of pre-volume storage directories; exports and imports). "" = the app's
    # own release image for the move.
    storage_helper_image: str = ""
    # Each app's containers live on a Docker network of their own, with a subnet taken from
    # this pool (IPv4, carved into /app_network_prefix subnets: a /16 into /26 gives 1024
    # apps of up to 61 containers each). Subnets already used by Docker or a host route are
    # skipped; dockerd's default pools are not used.
    app_network_pool: str = "10.213.0.0/16"
    app_network_prefix: int = 26
    # Spare app networks `gitpaas serve` keeps made ahead (0: none): a new app claims one
    # instead of waiting for Docker's network create, which grows with the number of
    # networks on the host (0.07 s with one app, 0.12 s with 200; issue 17, scale).
    app_network_spares: int = 2
    # Most processes (and threads) one app container may run (0: no limit): a fork bomb
    # stays in its container.
    pids_limit: int = 512
    # Where app containers run: "docker" (this host's engine) or "swarm" (services of a
    # Docker Swarm; docs/scaling.md). swarm_docker_url: the swarm manager's Docker API
    # ("" = this host's engine, which is then the manager). registry_listen: HOST:PORT
    # of the registry gitpaas runs for the nodes (an address of their private network).
    runtime: str = "docker"
    swarm_docker_url: str = ""
    registry_listen: str = ""
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
    # Seconds between repacks of app repos (git gc, at idle I/O priority; 0: never).
    repo_gc_interval: float = 3600.0
    keep_releases: int = 5
    max_context_bytes: int = 512 * 1024 * 1024
    max_context_files: int = 50_000
    max_push_bytes: int = 1024 * 1024 * 1024
    # Largest object (file, or delta result) a push may hold: each is inflated in memory.
    max_object_bytes: int = 100 * 1024 * 1024
    # Limits of every container unless resources:set says otherwise ("" = none).
    default_memory: str = "512m"
    default_cpus: float = 0.0
    # Ceilings of what a non-admin may ask with resources:set ("" / 0: the default above
    # is the ceiling; both empty / 0: none). Admins may set more.
    max_memory: str = ""
    max_cpus: float = 0.0
    # Most containers one app may run (all process types together) when a non-admin scales.
    max_replicas: int = 10
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
    # Limits of every build (its RUN steps): memory without swap on top, CPU weight
    # against the apps' 1024, CPUs ("" = all), /dev/shm, and seconds for the whole build.
    build_memory: str = "1g"
    build_cpu_shares: int = 512
    build_cpuset: str = ""
    build_shm_size: str = "64m"
    build_timeout: float = 1800.0
    # Images a Dockerfile's FROM may name besides gitpaas-base/*, the app's own images and
    # scratch: comma-separated patterns (fnmatch), e.g. "debian:bookworm*,python:3.12-slim".
    build_allowed_images: str = ""
    # Backups (restic; see docs/operations.md). backup_repo: a directory, or an sftp:/s3:
    # URL passed to restic ("" = no backups). The password file is read by restic only
    # (RESTIC_PASSWORD_FILE); default <data_dir>/backup.password, made on first use.
    backup_repo: str = ""
    backup_password_file: str = ""
    # "daily", "hourly", "weekly", "off", or seconds between backups made by serve.
    backup_schedule: str = "daily"
    backup_keep_daily: int = 7
    backup_keep_weekly: int = 4
    # doctor: percent of a disk in use that counts as a problem; restarts of one
    # container that count as a crash loop; seconds between doctor passes in serve.
    disk_threshold: int = 90
    crash_restarts: int = 3
    doctor_interval: float = 300.0
    # serve's log: "" = stderr (the journal under systemd), else a file rotated at
    # log_max_bytes (and access.log next to it for the router's access lines).
    log_file: str = ""
    log_max_bytes: int = 10 * 1024 * 1024
    # Image name of each buildpack's base, by buildpack name (see images/).
    base_images: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # The edge (nginx, see docs/router.md). Durations in seconds.
    # nginx worker processes.
    router_workers: int = 1
    # host:port of the Prometheus /metrics page; empty: none.
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
    # One line per request in <data_dir>/edge/logs/access.log.
    router_access_log: bool = True
    # TLS: <data_dir>/edge/certs/<host>.crt and .key, chosen by SNI; empty: no TLS.
    router_https_listen: str = ""
    # Every plain-HTTP request answers 301 to HTTPS (per app: edge:set APP https-redirect=true).
    router_https_redirect: bool = False
    # access.log is rotated (to .1, .2) past this size (checked each second by serve/router).
    edge_access_log_max_size: str = "100m"
    # Request body limit of an app unless edge:set says otherwise, and the ceiling of all.
    edge_client_max_body_size: str = "100m"
    edge_max_body_size: str = "1g"
    # Per client IP: open connections, requests per second (and burst); addresses exempt.
    edge_limit_conn: int = 512
    edge_limit_rate: int = 200
    edge_limit_burst: int = 400
    edge_limit_exempt: str = "127.0.0.0/8 ::1"
    # The user nginx's workers run as ("": gitpaas' own user). Its workers read the
    # certificate keys and write temp files under <data_dir>/edge, which must be
    # reachable by that user (the data dir is 0700).
    edge_user: str = ""
    # Automatic HTTPS (docs/https.md): the ACME directory URL ("" = off), e.g. Let's
    # Encrypt's https://acme-v02.api.letsencrypt.org/directory; the account's contact
    # e-mail; a CA bundle (PEM file) that verifies the ACME server instead of the
    # system's (tests: Pebble's).
    acme_directory: str = ""
    acme_email: str = ""
    acme_ca_bundle: str = ""

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
    def storage_dir(self) -> Path:
        """Where apps' persistent directories live: ``<data_dir>/storage/<app>/``."""
        return self.data_dir / "storage"

    @property
    def secret_key_path(self) -> Path:
        return self.data_dir / "secret.key"

    @property
    def backup_password_path(self) -> Path:
        return Path(self.backup_password_file) if self.backup_password_file \
            else self.data_dir / "backup.password"

    @property
    def backup_interval(self) -> float:
        """Seconds between scheduled backups (0: none)."""
        named = {"off": 0.0, "hourly": 3600.0, "daily": 86400.0, "weekly": 7 * 86400.0}
        if self.backup_schedule in named:
            return named[self.backup_schedule] if self.backup_repo else 0.0
        return float(self.backup_schedule) if self.backup_repo else 0.0

    def listen(self, which: str) -> tuple[str, int]:
        """Split ``<which>_listen`` (``ssh``, ``http``, ``router_https``,
        ``router_admin``) into (host, port)."""
        return split_listen(getattr(self, f"{which}_listen"), f"{which}_listen")


# Settings holding a listen address (``HOST:PORT``); the router ones may be empty (off).
LISTEN_SETTINGS = ("ssh_listen", "http_listen", "router_https_listen", "router_admin_listen")


def split_listen(value: str, setting: str = "listen") -> tuple[str, int]:
    """``HOST:PORT``, ``[IPV6]:PORT`` or ``:PORT`` (all addresses: ``0.0.0.0``) as
    (host, port); ``InvalidInput`` naming ``setting`` for anything else. The one parser
    of listen addresses (the SSH server, the edge's nginx, doctor, addresses)."""
    host, colon, port = value.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        valid = _is_ip(host, 6)
    else:
        valid = ":" not in host and (not host or _is_ip(host, 4) or _is_host(host))
    if not (colon and valid and port.isascii() and port.isdigit() and int(port) <= 65535):
        raise InvalidInput(f"invalid setting {setting}={value!r}: HOST:PORT, [IPV6]:PORT"
                           " or :PORT, a port from 0 to 65535")
    return host or "0.0.0.0", int(port)


def _is_ip(text: str, version: int) -> bool:
    try:
        return ipaddress.ip_address(text).version == version
    except ValueError:
        return False


def _is_host(text: str) -> bool:
    try:
        names.hostname(text)
    except InvalidInput:
        return False
    return True


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _to_bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int) and raw in (0, 1):
        return bool(raw)
    word = str(raw).strip().lower() if isinstance(raw, str) else None
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError("expected true or false (also yes/no, on/off, 1/0)")


def _to_int(raw: Any) -> int:
    if isinstance(raw, bool):
        raise ValueError("expected a whole number")
    if isinstance(raw, float):
        if not raw.is_integer():
            raise ValueError("expected a whole number")
        return int(raw)
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str) and raw.strip().isascii():
        return int(raw.strip(), 10)
    raise ValueError("expected a whole number")


def _to_float(raw: Any) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise ValueError("expected a number")
    if isinstance(raw, str) and not raw.strip().isascii():
        raise ValueError("expected a number")
    value = float(raw)
    if not math.isfinite(value):
        raise ValueError("expected a finite number")
    return value


def _to_mapping(raw: Any) -> dict[str, str]:
    if isinstance(raw, str):
        try:
            raw = yaml.safe_load(raw) or {}
        except yaml.YAMLError as exc:
            raise ValueError("expected a mapping (YAML or JSON)") from exc
    if not isinstance(raw, Mapping):
        raise ValueError("expected a mapping (YAML or JSON)")
    return {str(k): str(v) for k, v in raw.items()}


def _coerce(name: str, raw: Any, kind: Any, origin: str = "") -> Any:
    """``raw`` as the type of field ``name``; a value that does not parse is an error that
    names the setting (never a silent default: ``ture`` is not False)."""
    kind = getattr(kind, "__name__", str(kind))
    try:
        if raw is None:
            if kind == "str":
                return ""  # "key:" with nothing after it in YAML
            raise ValueError("no value")
        if kind == "Path":
            if not isinstance(raw, str | os.PathLike) or not str(raw):
                raise ValueError("expected a path")
            return Path(raw)
        if kind == "bool":
            return _to_bool(raw)
        if kind == "int":
            return _to_int(raw)
        if kind == "float":
            return _to_float(raw)
        if "Mapping" in kind:
            return _to_mapping(raw)
        if isinstance(raw, list | dict | set | tuple):
            raise ValueError("expected a single value")
        return str(raw)
    except (TypeError, ValueError) as exc:
        where = f" ({origin})" if origin else ""
        raise InvalidInput(f"invalid setting {name}={raw!r}{where}: {exc}") from exc


def _check_network_pool(settings: Settings) -> None:
    try:
        pool = ipaddress.IPv4Network(settings.app_network_pool)
    except ValueError as exc:
        raise InvalidInput(f"invalid setting app_network_pool: {exc}") from exc
    if not pool.prefixlen <= settings.app_network_prefix <= 29:
        raise InvalidInput(f"app_network_prefix must be from {pool.prefixlen} (the pool's) "
                           "to 29")
    if not 0 <= settings.app_network_spares <= 20:
        raise InvalidInput("app_network_spares must be from 0 to 20")


def load(
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    config_file: str | os.PathLike[str] | None = None,
) -> Settings:
    """Build the settings from defaults, a YAML file, the environment and ``overrides``."""
    env = os.environ if environ is None else environ
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}  # where each value came from, for the error message
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
        origin.update({str(k): f"in {path}" for k in loaded})
    known = {f.name: f.type for f in fields(Settings)}
    for name in known:
        variable = f"GITPAAS_{name.upper()}"
        raw = env.get(variable)
        if raw is not None and raw != "":
            values[name] = raw
            origin[name] = f"from {variable}"
    values.update(overrides)
    origin.update({k: "given" for k in overrides})
    unknown = set(values) - set(known)
    if unknown:
        raise InvalidInput(f"unknown setting(s): {', '.join(sorted(unknown))}")
    coerced = {k: _coerce(k, v, known[k], origin.get(k, "")) for k, v in values.items()}
    settings = Settings(**coerced)
    _check_network_pool(settings)
    for name in LISTEN_SETTINGS:
        if name.startswith("router_") and not getattr(settings, name):
            continue
        split_listen(getattr(settings, name), name)
    names.instance_name(settings.instance)
    names.hostname(settings.domain)
    if settings.ssh_public_host:
        names.hostname(settings.ssh_public_host)
    try:
        Startups.parse(settings.ssh_max_startups)
    except ValueError as exc:
        raise InvalidInput(f"invalid setting ssh_max_startups={settings.ssh_max_startups!r}:"
                           f" {exc}") from None
    if settings.runtime not in {"docker", "swarm"}:
        raise InvalidInput(f"invalid setting runtime={settings.runtime!r}: docker or swarm")
    if settings.runtime == "swarm" and ":" not in settings.registry_listen:
        raise InvalidInput("runtime swarm needs registry_listen (HOST:PORT the nodes reach)")
    if settings.public_scheme not in {"http", "https"}:
        raise InvalidInput(f"invalid setting public_scheme={settings.public_scheme!r}:"
                           " http or https")
    if settings.backup_schedule not in {"off", "hourly", "daily", "weekly"}:
        try:
            if float(settings.backup_schedule) <= 0:
                raise ValueError
        except ValueError:
            raise InvalidInput("backup_schedule must be off, hourly, daily, weekly or a"
                               f" number of seconds, not {settings.backup_schedule!r}") from None
    return settings
