"""Tenant storage: Docker named volumes that gitpaas makes, mounts by name and removes.

A tenant's ``storage:mount uploads:/data`` is the volume ``<instance>.<app>.uploads``
(labels ``gitpaas.instance``, ``gitpaas.app``, ``gitpaas.storage``). Docker keeps its
data under its own directory, which no container can rename or replace with a symlink, and
the volume is mounted by name: no host path a container could ever write is resolved at a
container's start. Host paths are bound only for admins (``storage_roots``).

Reading and writing a volume's files (exports, imports, the one-off move of a legacy
host directory) runs in a throwaway container of a local image, where every path,
symlinks included, resolves inside that container, never on the host. Such a container
has no network, no capabilities beyond file ownership, no new privileges and no log.
"""

from __future__ import annotations

import io
import logging
import tarfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import docker
import docker.errors
from docker.models.containers import Container
from docker.types import LogConfig, Mount

from ..errors import DeployError, ServiceError

LABEL = "gitpaas"
JOB_LABEL = "gitpaas.volume-job"
IMPORT_FILE = ".gitpaas-import.tar"
JOB_CAPS = ["CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID"]
log = logging.getLogger(__name__)

# (Volumes has a method named ``list``: these are the annotations of its job methods.)
Argv = list[str]
Mounts = list[Mount]


@dataclass(frozen=True)
class StorageMount:
    """One mount of an app container: a gitpaas volume, or (admins only) a host path."""

    source: str  # the volume's name, or an absolute host path
    target: str
    volume: bool = True

    def docker_mount(self) -> Mount:
        """The ``docker.types.Mount``: by volume name, never a path, for tenant storage."""
        if self.volume:
            # no_copy: like a bind, the volume starts empty (the image's files at the
            # target are not copied in).
            return Mount(self.target, self.source, type="volume", no_copy=True)
        return Mount(self.target, self.source, type="bind")


def volume_name(instance: str, app: str, name: str) -> str:
    """``<instance>.<app>.<name>``: instance and app names hold no dot, so it is unique."""
    return f"{instance}.{app}.{name}"


class Volumes:
    """The named volumes of one gitpaas instance."""

    def __init__(self, client: docker.DockerClient, instance: str) -> None:
        self.client = client
        self.instance = instance

    def labels(self, app: str, name: str) -> dict[str, str]:
        return {f"{LABEL}.instance": self.instance, f"{LABEL}.app": app,
                f"{LABEL}.storage": name}

    def ensure(self, app: str, name: str) -> str:
        """Create the volume of ``app``'s storage ``name`` unless it exists; its name.

        An existing volume of that name that gitpaas did not make for this app is refused.
        """
        volume = volume_name(self.instance, app, name)
        wanted = self.labels(app, name)
        try:
            try:
                found = self.client.volumes.get(volume)
            except docker.errors.NotFound:
                found = self.client.volumes.create(volume, driver="local", labels=wanted)
        except docker.errors.DockerException as exc:
            raise ServiceError(f"Docker is unavailable: {exc}") from exc
        labels = found.attrs.get("Labels") or {}
        if any(labels.get(k) != v for k, v in wanted.items()):
            raise DeployError(f"volume {volume} exists but gitpaas did not make it for"
                              f" {app}: an admin must remove or rename it")
        return volume

    def exists(self, app: str, name: str) -> bool:
        try:
            self.client.volumes.get(volume_name(self.instance, app, name))
            return True
        except docker.errors.NotFound:
            return False

    def list(self, app: str | None = None) -> list[str]:
        """Names of this instance's volumes (of one app)."""
        filters = [f"{LABEL}.instance={self.instance}"]
        if app:
            filters.append(f"{LABEL}.app={app}")
        return sorted(v.name for v in self.client.volumes.list(filters={"label": filters}))

    def remove_app(self, app: str) -> None:
        """Remove every volume of ``app`` (``apps:destroy``, after its containers)."""
        for name in self.list(app):
            try:
                self.client.volumes.get(name).remove(force=True)
            except docker.errors.NotFound:
                continue
            except docker.errors.APIError as exc:
                log.error("cannot remove volume %s: %s", name, exc.explanation or exc)

    # -- file access through throwaway containers ---------------------------------------

    def _job(self, image: str, argv: Argv, mounts: Mounts) -> Container:
        try:
            return self.client.containers.create(
                image, entrypoint=argv, command=[], user="0", network_mode="none",
                cap_drop=["ALL"], cap_add=JOB_CAPS, security_opt=["no-new-privileges"],
                pids_limit=64, mem_limit="256m", log_config=LogConfig(type=LogConfig.types.NONE),
                labels={JOB_LABEL: self.instance}, mounts=mounts, working_dir="/",
                name=f"{self.instance}.volume-job.{uuid.uuid4().hex[:12]}")
        except docker.errors.ImageNotFound as exc:
            raise ServiceError(f"image {image} is missing (volume jobs need a local image"
                               " with tar and cp, e.g. gitpaas-base/static)") from exc
        except docker.errors.DockerException as exc:
            raise ServiceError(f"Docker is unavailable: {exc}") from exc

    @staticmethod
    def _finish(container: Container, what: str) -> None:
        code = int(container.wait(timeout=3600).get("StatusCode", 1))
        if code != 0:
            raise ServiceError(f"{what} failed (exit {code})")

    @staticmethod
    def _remove(container: Container) -> None:
        try:
            container.remove(force=True)
        except docker.errors.DockerException:
            pass

    def export_tar(self, volume: str, image: str) -> Iterator[bytes]:
        """The volume's files as an uncompressed tar stream (members ``./...``).

        ``tar`` runs in a throwaway container of ``image`` (read-only mount): symlinks in
        the volume are archived as symlinks and resolve, if at all, inside that container.
        Consume the whole iterator; a failure raises ``ServiceError`` at its end.
        """
        container = self._job(image, ["tar", "-C", "/v", "-cf", "-", "."],
                              [Mount("/v", volume, type="volume", read_only=True)])
        try:
            stream = container.attach(stdout=True, stderr=False, stream=True, logs=False)
            container.start()
            yield from stream
            self._finish(container, f"export of {volume}")
        except docker.errors.DockerException as exc:
            raise ServiceError(f"cannot export {volume}: {exc}") from exc
        finally:
            self._remove(container)

    def import_tar(self, volume: str, image: str, data: BinaryIO) -> None:
        """Extract the tar stream ``data`` into the volume (files of the same name are
        replaced, others kept), in a throwaway container of ``image``.

        The archive goes into the container's own layer first, never into the volume, so
        its members (``..``, symlinks) land inside that container at worst.
        """
        container = self._job(image, ["tar", "-C", "/v", "-xf", f"/{IMPORT_FILE}"],
                              [Mount("/v", volume, type="volume")])
        try:
            container.put_archive("/", _wrapped(data))
            container.start()
            self._finish(container, f"import into {volume}")
        except docker.errors.DockerException as exc:
            raise ServiceError(f"cannot import into {volume}: {exc}") from exc
        finally:
            self._remove(container)

    def copy_host_dir(self, volume: str, image: str, root: Path, relative: str) -> None:
        """Copy ``root/relative`` into the volume (the move of a legacy storage directory).

        ``root`` (an app's ``<data_dir>/storage/<app>``) is bound read-only: no container
        ever had it mounted, so no container could have replaced a part of its path. Below
        it, ``relative`` resolves inside the throwaway container: a symlink planted there
        reaches that container's own files, never the host's.
        """
        container = self._job(image, ["cp", "-a", f"/old/{relative}/.", "/v/"],
                              [Mount("/old", str(root), type="bind", read_only=True),
                               Mount("/v", volume, type="volume")])
        try:
            container.start()
            self._finish(container, f"copy of {root / relative} into {volume}")
        except docker.errors.DockerException as exc:
            raise ServiceError(f"cannot copy {root / relative} into {volume}: {exc}") from exc
        finally:
            self._remove(container)


def _wrapped(data: BinaryIO) -> Iterator[bytes]:
    """A tar holding one member, ``IMPORT_FILE``, whose content is ``data`` (streamed when
    ``data`` is seekable, spooled to a temporary file otherwise)."""
    import tempfile

    if not data.seekable():
        spool = tempfile.TemporaryFile()  # noqa: SIM115 - closed below
        while chunk := data.read(1 << 20):
            spool.write(chunk)
        spool.seek(0)
        data = spool
    start = data.tell()
    size = data.seek(0, io.SEEK_END) - start
    data.seek(start)
    info = tarfile.TarInfo(IMPORT_FILE)
    info.size, info.mode = size, 0o600
    yield info.tobuf(format=tarfile.PAX_FORMAT)
    sent = 0
    while sent < size and (chunk := data.read(min(1 << 20, size - sent))):
        sent += len(chunk)
        yield chunk
    yield b"\0" * ((512 - size % 512) % 512) + b"\0" * 1024
