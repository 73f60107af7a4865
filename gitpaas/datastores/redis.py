"""A Redis of its own for each app: ``redis:create`` starts a container of the offline
base image ``gitpaas-base/redis`` on the app's own network, its data on a volume.

Why a container per app, not an ACL user per app on the shared server: most apps (job
queues, caches, Django/Rails sessions) use fixed key names and ``FLUSHDB``; a key-prefix
ACL would break them, and the shared server holds the edge's routes. A container per app
gives each app the whole Redis API, its own memory limit, and a network no other app is
on: another app can neither reach its address nor, without its password, use it.

The container is named ``<instance>-redis-<app>`` (the host in REDIS_URL; Docker's DNS on
the app's network resolves it) and carries ``gitpaas.datastore.*`` labels, not the app
labels: the reconciler never mistakes it for an app container. The password is written
into the container's config file before it starts: never in its command line, its
environment, an image or a log.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlparse

import docker
import docker.errors
import redis
from docker.models.containers import Container

from ..errors import Conflict, InvalidInput, NotFound, ServiceError
from .mysql import new_password

PORT = 6379
LABEL = "gitpaas.datastore"
CONFIG_PATH = "/etc/redis/gitpaas.conf"
CONFIG_KEYS = ("REDIS_URL",)


@dataclass(frozen=True)
class Credentials:
    """How an app reaches its Redis. ``repr`` never shows the password."""

    host: str
    port: int
    password: str

    def __repr__(self) -> str:
        return f"Credentials(host={self.host!r}, port={self.port}, password='****')"

    def url(self, reveal: bool = True) -> str:
        password = quote(self.password, safe="") if reveal else "****"
        return f"redis://:{password}@{self.host}:{self.port}/0"

    def config_vars(self) -> dict[str, str]:
        return {"REDIS_URL": self.url()}


def credentials_from_config(config: dict[str, str]) -> Credentials | None:
    url = config.get("REDIS_URL", "")
    if not url.startswith("redis://"):
        return None
    p = urlparse(url)
    try:
        port = p.port or PORT
    except ValueError:
        return None
    return Credentials(p.hostname or "", port, unquote(p.password or ""))


def config_file(password: str, maxmemory: str) -> bytes:
    """redis.conf of one app's server."""
    if any(c in password for c in "\r\n \"'\\") or any(c in maxmemory for c in "\r\n "):
        raise InvalidInput("a Redis setting may not hold spaces, quotes or newlines")
    return (f"bind 0.0.0.0\nport {PORT}\nprotected-mode no\ndir /var/lib/redis\n"
            f"appendonly yes\nrequirepass {password}\nmaxmemory {maxmemory}\n"
            "maxmemory-policy noeviction\nlogfile \"\"\n").encode()


def config_tar(data: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(CONFIG_PATH.lstrip("/"))
        # Readable by the redis user the server runs as; nothing else runs in there.
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class RedisDatastores:
    """Creates, inspects and removes the Redis containers of one instance's apps."""

    def __init__(self, client: docker.DockerClient, instance: str,
                 image: Callable[[], str], network: Callable[[str], str | None],
                 maxmemory: str = "128mb", mem_limit: str = "256m") -> None:
        self.client = client
        self.instance = instance
        self.image = image
        self.network = network
        self.maxmemory = maxmemory
        self.mem_limit = mem_limit

    def name(self, app: str) -> str:
        """The container's (and the volume's) name: ``<instance>-redis-<app>``."""
        return f"{self.instance}-redis-{app}"

    def labels(self, app: str) -> dict[str, str]:
        return {f"{LABEL}.instance": self.instance, f"{LABEL}.app": app,
                f"{LABEL}.kind": "redis"}

    def _container(self, app: str) -> Container | None:
        try:
            found = self.client.containers.get(self.name(app))
        except docker.errors.NotFound:
            return None
        except docker.errors.DockerException as exc:
            raise ServiceError(f"Docker is unavailable: {exc}") from exc
        if found.labels != {**found.labels, **self.labels(app)}:
            return None  # not ours: never touched
        return found

    def create(self, app: str) -> Credentials:
        """Start the app's Redis; refuse if one exists already."""
        name = self.name(app)
        if self._container(app) is not None:
            raise Conflict(f"{app} has a Redis container already ({name})")
        password = new_password()
        network = self.network(app)
        # docker-py takes plain dicts; its stubs allow no "unless-stopped" and want a
        # LogConfig object
        options: dict[str, Any] = {
            "restart_policy": {"Name": "unless-stopped"},
            "log_config": {"Type": "json-file", "Config": {"max-size": "1m"}}}
        try:
            self.client.volumes.create(name, labels=self.labels(app))
            container = self.client.containers.create(
                self.image(), name=name, labels=self.labels(app), user="redis",
                volumes={name: {"bind": "/var/lib/redis", "mode": "rw"}},
                network=network, mem_limit=self.mem_limit, pids_limit=256,
                security_opt=["no-new-privileges"], cap_drop=["ALL"], **options)
            container.put_archive("/", config_tar(config_file(password, self.maxmemory)))
            container.start()
        except docker.errors.ImageNotFound as exc:
            self.destroy(app)
            raise ServiceError(f"the Redis image is missing: run gitpaas images:build redis"
                               f" ({exc.explanation or exc})") from exc
        except docker.errors.DockerException as exc:
            self.destroy(app)
            raise ServiceError(f"cannot start Redis for {app}: {exc}") from exc
        return Credentials(name, PORT, password)

    def address(self, app: str) -> str:
        """The container's address on its network (for gitpaas's own checks)."""
        container = self._container(app)
        if container is None:
            raise NotFound(f"{app} has no Redis container")
        container.reload()
        networks = container.attrs.get("NetworkSettings", {}).get("Networks") or {}
        for settings in networks.values():
            if settings.get("IPAddress"):
                return str(settings["IPAddress"])
        raise ServiceError(f"the Redis container of {app} has no address (not running?)")

    def stats(self, app: str, password: str) -> dict[str, Any]:
        """State, memory used and keys of the app's Redis."""
        container = self._container(app)
        if container is None:
            return {"state": "missing"}
        stats: dict[str, Any] = {"state": container.status}
        try:
            client = redis.Redis(host=self.address(app), port=PORT, password=password,
                                 socket_timeout=3)
            memory = client.info("memory")
            stats.update(used_memory=memory.get("used_memory_human"),
                         keys=int(client.dbsize()))
        except (redis.RedisError, ServiceError) as exc:
            stats["error"] = str(exc).splitlines()[0]
        return stats

    def wait_ready(self, app: str, password: str, timeout: float = 20.0) -> None:
        """Until the server answers PING (or ``ServiceError``)."""
        import time

        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            try:
                redis.Redis(host=self.address(app), port=PORT, password=password,
                            socket_timeout=2).ping()
                return
            except (redis.RedisError, ServiceError) as exc:
                last = str(exc)
                time.sleep(0.2)
        raise ServiceError(f"the Redis of {app} did not start: {last}")

    def destroy(self, app: str) -> None:
        """Remove the app's Redis container and its data volume (each if present)."""
        container = self._container(app)
        try:
            if container is not None:
                container.remove(force=True)
            try:
                volume = self.client.volumes.get(self.name(app))
                if (volume.attrs.get("Labels") or {}).get(f"{LABEL}.app") == app:
                    volume.remove(force=True)
            except docker.errors.NotFound:
                pass
        except docker.errors.DockerException as exc:
            raise ServiceError(f"cannot remove the Redis of {app}: {exc}") from exc
