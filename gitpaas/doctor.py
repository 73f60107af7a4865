"""``gitpaas doctor``: is this install healthy? One ``Problem`` per thing to fix.

Checks: the services (Docker, Redis, MySQL and PostgreSQL when configured, the edge's
HTTP port), disk space of the data dir and of Docker's root, certificate expiry
(``<data_dir>/edge/certs``), backup age (when backups are
configured), containers that keep restarting, and with ``runtime: swarm`` the nodes that
are not ready and the registry. ``gitpaas serve`` runs the same checks
every ``doctor_interval`` seconds and notifies each problem when it appears (``Watcher``).
"""

from __future__ import annotations

import logging
import shutil
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import GitPaasError

if TYPE_CHECKING:
    from .platform import Platform
    from .settings import Settings

log = logging.getLogger(__name__)
CERT_WARN_DAYS = 14


@dataclass(frozen=True)
class Problem:
    """One thing to fix: ``kind`` (the notification kind), a stable ``key`` and a line."""

    kind: str
    key: str
    message: str
    app: str | None = None


def check_all(platform: Platform) -> list[Problem]:
    """Every check; a check that cannot run is itself a problem."""
    problems: list[Problem] = []
    for check in (check_services, check_disks, check_certificates, check_backups,
                  check_restarts, check_swarm):
        try:
            problems += check(platform)
        except GitPaasError as exc:
            problems.append(Problem("service-down", check.__name__, exc.message))
    return problems


def check_services(platform: Platform) -> list[Problem]:
    settings = platform.settings
    problems = []
    try:
        platform.docker.ping()
    except Exception as exc:  # noqa: BLE001 - any failure: Docker is not usable
        problems.append(Problem("service-down", "docker", f"docker: not reachable ({exc})"))
    try:
        import redis

        client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=3)
        client.ping()
        client.close()
    except Exception as exc:  # noqa: BLE001
        problems.append(Problem("service-down", "redis", f"redis: not reachable ({exc})"))
    if settings.mysql_admin_url:
        try:
            with platform.mysql._admin() as cur:
                cur.execute("SELECT 1")
        except GitPaasError as exc:
            problems.append(Problem("service-down", "mysql", f"mysql: {exc.message}"))
    if getattr(settings, "postgres_admin_url", ""):
        try:
            platform.postgres.stats("postgres")
        except GitPaasError as exc:
            problems.append(Problem("service-down", "postgres", f"postgres: {exc.message}"))
    host, port = settings.listen("http")
    try:
        socket.create_connection(("127.0.0.1" if host in {"0.0.0.0", "::"} else host, port),
                                 3).close()
    except OSError as exc:
        problems.append(Problem("service-down", "edge",
                                f"edge: nothing answers on {host}:{port} ({exc.strerror})"))
    return problems


def check_swarm(platform: Platform) -> list[Problem]:
    """``runtime: swarm``: every node ready, and the registry answering."""
    if platform.settings.runtime != "swarm":
        return []
    from .registry import RegistryFiles, RegistryProcess
    from .runtime.swarm import Nodes, SwarmRuntime

    runtime: object = platform.runtime
    if not isinstance(runtime, SwarmRuntime):
        return []
    problems = [Problem("service-down", f"node:{n['hostname']}",
                        f"node {n['hostname']} ({n['address']}) is {n['state']}")
                for n in Nodes(runtime).list() if n["state"] != "ready"]
    files = RegistryFiles(platform.settings)
    if not RegistryProcess(files).ping():
        problems.append(Problem("service-down", "registry",
                                f"registry: not answering at {files.listen}"))
    return problems


def _docker_root(platform: Platform) -> Path | None:
    try:
        return Path(platform.docker.info().get("DockerRootDir", ""))
    except Exception:  # noqa: BLE001 - reported by check_services
        return None


def check_disks(platform: Platform) -> list[Problem]:
    threshold = platform.settings.disk_threshold
    problems, seen = [], set()
    for path in (platform.settings.data_dir, _docker_root(platform)):
        if path is None or not path.exists():
            continue
        usage = shutil.disk_usage(path)
        device = path.stat().st_dev
        if device in seen:
            continue
        seen.add(device)
        used = 100 * (usage.total - usage.free) / usage.total if usage.total else 0
        if used >= threshold:
            problems.append(Problem("disk-full", f"disk:{path}",
                                    f"disk: {path} is {used:.0f}% full (threshold"
                                    f" {threshold}%), {usage.free // 2**20} MiB free"))
    return problems


def certificate_files(settings: Settings) -> list[Path]:
    dirs = [settings.data_dir / "edge" / "certs"]
    found = []
    for directory in dirs:
        if directory.is_dir():
            found += sorted(p for p in directory.rglob("*") if p.suffix in {".crt", ".pem"}
                            and p.is_file())
    return found


def check_certificates(platform: Platform, now: float | None = None) -> list[Problem]:
    from cryptography import x509

    now = time.time() if now is None else now
    problems = []
    for path in certificate_files(platform.settings):
        try:
            cert = x509.load_pem_x509_certificate(path.read_bytes())
        except (OSError, ValueError):
            continue  # a key file or a chain we cannot read: not a certificate
        expires = cert.not_valid_after_utc.timestamp()
        days = (expires - now) / 86400
        if days < CERT_WARN_DAYS:
            when = f"expired {int(-days)} days ago" if days < 0 else f"expires in {int(days)} days"
            problems.append(Problem("certificate-expiry", f"cert:{path}",
                                    f"certificate: {path.name} {when}"))
    return problems


def check_backups(platform: Platform, now: float | None = None) -> list[Problem]:
    settings = platform.settings
    if not settings.backup_repo:
        return []
    now = time.time() if now is None else now
    store = platform.store
    last = store.last_backup()
    if last is not None and last.status == "failed":
        return [Problem("backup-failed", "backup",
                        f"backup: the last backup failed: {last.detail}")]
    good = store.last_backup("succeeded")
    limit = 2 * (settings.backup_interval or 86400.0)
    if good is None:
        return [Problem("backup-stale", "backup", "backup: no backup was ever made"
                        " (gitpaas backups:create)")]
    age = now - good.finished_at
    if age > limit:
        return [Problem("backup-stale", "backup",
                        f"backup: the newest backup is {age / 3600:.0f} hours old")]
    return []


def check_restarts(platform: Platform) -> list[Problem]:
    """Containers of this instance that Docker restarted ``crash_restarts`` times or more."""
    settings = platform.settings
    problems = []
    label = f"gitpaas.instance={settings.instance}"
    try:
        containers = platform.docker.containers.list(all=True, filters={"label": label})
    except Exception:  # noqa: BLE001 - reported by check_services
        return []
    for c in containers:
        count = int(c.attrs.get("RestartCount", 0) or 0)
        if count >= settings.crash_restarts:
            app = c.labels.get("gitpaas.app")
            problems.append(Problem("crash-loop", f"restart:{c.name}",
                                    f"app {app}: {c.name} restarted {count} times"
                                    f" (gitpaas logs {app})", app))
    return problems


class Watcher:
    """Runs the checks every ``doctor_interval`` seconds; notifies new problems once."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.known: set[str] = set()

    def run_once(self) -> list[Problem]:
        from .notify import notify

        problems = check_all(self.platform)
        keys = {p.key for p in problems}
        for problem in problems:
            if problem.key not in self.known:
                notify(self.platform, problem.kind, problem.app, problem.message)
        self.known = keys
        return problems

    def loop(self, stop: threading.Event, interval: float) -> None:
        while not stop.wait(interval):
            try:
                self.run_once()
            except Exception:  # noqa: BLE001 - the loop must outlive one bad pass
                log.exception("doctor pass failed")
