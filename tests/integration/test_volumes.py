"""Storage volumes on the real Docker engine: made, labelled, exported, imported, removed."""

from __future__ import annotations

import io
import tarfile

import pytest

from gitpaas.errors import DeployError, ServiceError
from gitpaas.runtime.volumes import Volumes, volume_name


def tar_of(members: dict[str, bytes | str]) -> bytes:
    """Files (bytes) and symlinks (str: the link target)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, value in members.items():
            info = tarfile.TarInfo(name)
            if isinstance(value, str):
                info.type, info.linkname = tarfile.SYMTYPE, value
                tar.addfile(info)
            else:
                info.size = len(value)
                tar.addfile(info, io.BytesIO(value))
    return buf.getvalue()


@pytest.fixture
def volumes(docker_client, instance):
    vols = Volumes(docker_client, instance)
    yield vols
    for app in ("shop", "other"):
        vols.remove_app(app)


def test_volumes_round_trip_through_tar_streams(volumes, busybox_image, docker_client):
    name = volumes.ensure("shop", "uploads")
    assert name == volume_name(volumes.instance, "shop", "uploads")
    assert volumes.ensure("shop", "uploads") == name  # idempotent
    labels = docker_client.volumes.get(name).attrs["Labels"]
    assert labels == {"gitpaas.instance": volumes.instance, "gitpaas.app": "shop",
                      "gitpaas.storage": "uploads"}
    big = bytes(range(256)) * 8192  # 2 MiB, several chunks
    archive = tar_of({"a.txt": b"hello\n", "dir/big.bin": big, "link": "/etc/passwd"})
    volumes.import_tar(name, busybox_image, io.BytesIO(archive))
    exported = b"".join(volumes.export_tar(name, busybox_image))
    with tarfile.open(fileobj=io.BytesIO(exported)) as tar:
        members = {m.name.removeprefix("./"): m for m in tar.getmembers()}
        assert tar.extractfile(members["a.txt"]).read() == b"hello\n"
        assert tar.extractfile(members["dir/big.bin"]).read() == big
        assert members["link"].issym() and members["link"].linkname == "/etc/passwd"
    # Not seekable input is spooled first.
    class Pipe(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self.data = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def read(self, n: int = -1) -> bytes:
            return self.data.read(n)

    volumes.import_tar(name, busybox_image, Pipe(tar_of({"b.txt": b"piped\n"})))
    with tarfile.open(fileobj=io.BytesIO(b"".join(volumes.export_tar(name, busybox_image)))) \
            as tar:
        assert {"./a.txt", "./b.txt"} <= set(tar.getnames())
    assert not docker_client.containers.list(
        all=True, filters={"label": f"gitpaas.volume-job={volumes.instance}"})


def test_a_volume_gitpaas_did_not_make_is_refused(volumes, docker_client):
    name = volume_name(volumes.instance, "other", "data")
    docker_client.volumes.create(name, labels={"gitpaas.instance": volumes.instance,
                                               "gitpaas.app": "other"})
    with pytest.raises(DeployError, match="gitpaas did not make it"):
        volumes.ensure("other", "data")
    docker_client.volumes.get(name).remove()


def test_remove_app_removes_only_that_apps_volumes(volumes, docker_client):
    mine, theirs = volumes.ensure("shop", "a"), volumes.ensure("other", "a")
    volumes.remove_app("shop")
    assert volumes.list() == [theirs]
    assert mine not in [v.name for v in docker_client.volumes.list()]


def test_a_failing_job_is_an_error_and_leaves_nothing(volumes, busybox_image, docker_client):
    name = volumes.ensure("shop", "broken")
    with pytest.raises(ServiceError, match="failed"):
        volumes.import_tar(name, busybox_image, io.BytesIO(b"not a tar archive" * 100))
    with pytest.raises(ServiceError, match="missing"):
        list(volumes.export_tar(name, "gitpaas-test-no-such/image:latest"))
    assert not docker_client.containers.list(
        all=True, filters={"label": f"gitpaas.volume-job={volumes.instance}"})
