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
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

import docker
import docker.errors
import redis
from docker.models.containers import Container

from ..errors import Conflict, InvalidInput, NotFound, ServiceError
from .common import CHUNK, SecretRepr, new_password, parse_url, url_of

PORT = 6379
LABEL = "gitpaas.datastore"
CONFIG_PATH = "/etc/redis/gitpaas.conf"
DATA_DIR = "/var/lib/redis"
RDB_PATH = f"{DATA_DIR}/dump.rdb"
SAVE_TIMEOUT = 300.0  # seconds a snapshot or an append-only rewrite may take
CONFIG_KEYS = ("REDIS_URL",)


@dataclass(frozen=True, repr=False)
class Credentials(SecretRepr):
    """How an app reaches its Redis. ``repr`` never shows the password."""

    host: str
    port: int
    password: str

    def url(self, reveal: bool = True) -> str:
        """``redis://:password@host:port/0`` (password masked unless ``reveal``)."""
        return url_of("redis", "", self.password, self.host, self.port, "0", reveal)

    def config_vars(self) -> dict[str, str]:
        """The config var an app gets: REDIS_URL."""
        return {"REDIS_URL": self.url()}


def credentials_from_config(config: dict[str, str]) -> Credentials | None:
    """The credentials in an app's REDIS_URL, or None."""
    parsed = parse_url(config.get("REDIS_URL", ""), ("redis",), PORT)
    return Credentials(parsed.host, parsed.port, parsed.password) if parsed else None


def config_file(password: str, maxmemory: str, appendonly: bool = True) -> bytes:
    """redis.conf of one app's server (``appendonly`` off only while a restore loads its
    RDB file: with it on, Redis would start from an empty append-only file instead)."""
    if any(c in password for c in "\r\n \"'\\") or any(c in maxmemory for c in "\r\n "):
        raise InvalidInput("a Redis setting may not hold spaces, quotes or newlines")
    return (f"bind 0.0.0.0\nport {PORT}\nprotected-mode no\ndir {DATA_DIR}\n"
            f"appendonly {'yes' if appendonly else 'no'}\nrequirepass {password}\n"
            f"maxmemory {maxmemory}\nmaxmemory-policy noeviction\nlogfile \"\"\n").encode()


def config_tar(data: bytes, path: str = CONFIG_PATH) -> bytes:
    """A tar of one file at ``path`` holding ``data`` (for ``put_archive`` at ``/``)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(path.lstrip("/"))
        # Readable by the redis user the server runs as; nothing else runs in there.
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class ChunkReader(io.RawIOBase):
    """A readable file over an iterator of byte chunks (Docker's archive stream)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks
        self.rest = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self.rest:
            chunk = next(self.chunks, None)
            if chunk is None:
                return 0
            self.rest = chunk
        size = min(len(buffer), len(self.rest))
        buffer[:size] = self.rest[:size]
        self.rest = self.rest[size:]
        return size


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

    def create(self, app: str, password: str = "", appendonly: bool = True) -> Credentials:
        """Start the app's Redis (with a new password, or ``password``: a restore's);
        refuse if one exists already."""
        name = self.name(app)
        if self._container(app) is not None:
            raise Conflict(f"{app} has a Redis container already ({name})")
        password = password or new_password()
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
                volumes={name: {"bind": DATA_DIR, "mode": "rw"}},
                network=network, mem_limit=self.mem_limit, pids_limit=256,
                security_opt=["no-new-privileges"], cap_drop=["ALL"], **options)
            container.put_archive("/", config_tar(config_file(password, self.maxmemory,
                                                              appendonly)))
            container.start()
        except docker.errors.ImageNotFound as exc:
            self.destroy(app)
            raise ServiceError(f"the Redis image is missing: run gitpaas images:build redis"
                               f" ({exc.explanation or exc})") from exc
        except docker.errors.DockerException as exc:
            self.destroy(app)
            raise ServiceError(f"cannot start Redis for {app}: {exc}") from exc
        return Credentials(name, PORT, password)

    # -- backups ------------------------------------------------------------------------

    def export_rdb(self, app: str, password: str, write: Callable[[bytes], object]) -> int:
        """A snapshot of the app's Redis (``BGSAVE``: consistent, the server keeps
        serving), its ``dump.rdb`` streamed out of the container to ``write``; return its
        bytes."""
        container = self._container(app)
        if container is None:
            raise NotFound(f"{app} has no Redis container")
        client = self._client(app, password)
        try:
            saves = int(client.info("persistence")["rdb_saves"])
            client.bgsave(schedule=True)  # after a save already running, if any
            self._wait(client, lambda i: int(i["rdb_saves"]) > saves
                       and not int(i["rdb_bgsave_in_progress"]), "the snapshot")
            if client.info("persistence")["rdb_last_bgsave_status"] != "ok":
                raise ServiceError(f"the Redis of {app} could not write its snapshot")
            chunks, _ = container.get_archive(RDB_PATH)
        except redis.RedisError as exc:
            raise ServiceError(f"the Redis of {app}: {exc}") from exc
        except docker.errors.DockerException as exc:
            raise ServiceError(f"cannot read the snapshot of {app}'s Redis: {exc}") from exc
        total = 0
        with tarfile.open(fileobj=io.BufferedReader(ChunkReader(iter(chunks))),
                          mode="r|") as tar:
            for member in tar:
                data = tar.extractfile(member) if member.isfile() else None
                while data is not None and (chunk := data.read(CHUNK)):
                    total += len(chunk)
                    write(chunk)
        return total

    def restore(self, app: str, password: str, rdb: IO[bytes] | None) -> Credentials:
        """Start the app's Redis anew with ``password`` (the restored config vars') and
        the data of ``rdb`` (an ``export_rdb`` file, seekable; None: empty).

        Redis loads an RDB file only while append-only is off, so the server first starts
        with it off and the file in place, then turns it on (``CONFIG SET``: the data are
        rewritten into the append-only file) and gets its usual config file back."""
        creds = self.create(app, password, appendonly=rdb is None)
        if rdb is None:
            return creds
        container = self._container(app)
        assert container is not None
        try:
            self.wait_ready(app, password)
            container.stop(timeout=10)  # it saves its (empty) data set: replaced below
            with tempfile.TemporaryFile() as archive:  # a tar of the file, not in memory
                with tarfile.open(fileobj=archive, mode="w") as tar:
                    info = tarfile.TarInfo(RDB_PATH.lstrip("/"))
                    info.size, info.mode = rdb.seek(0, io.SEEK_END), 0o644
                    rdb.seek(0)
                    tar.addfile(info, rdb)
                archive.seek(0)
                container.put_archive("/", archive)
            container.start()
            self.wait_ready(app, password)
            client = self._client(app, password)
            client.config_set("appendonly", "yes")
            self._wait(client, lambda i: not int(i["aof_rewrite_in_progress"])
                       and not int(i["aof_rewrite_scheduled"]) and int(i["aof_rewrites"]) > 0,
                       "the append-only rewrite")
            container.put_archive("/", config_tar(config_file(password, self.maxmemory)))
        except (docker.errors.DockerException, redis.RedisError, ServiceError) as exc:
            self.destroy(app)
            raise ServiceError(f"cannot restore the Redis of {app}: {exc}") from exc
        return creds

    def _client(self, app: str, password: str) -> redis.Redis:
        return redis.Redis(host=self.address(app), port=PORT, password=password,
                           socket_timeout=30)

    @staticmethod
    def _wait(client: redis.Redis, done: Callable[[dict[str, Any]], bool], what: str,
              timeout: float = SAVE_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not done(client.info("persistence")):
            if time.monotonic() > deadline:
                raise ServiceError(f"Redis did not finish {what} in {timeout:g} s")
            time.sleep(0.1)

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
