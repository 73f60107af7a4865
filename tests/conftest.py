"""Shared fixtures: real services, namespaced per test run, cleaned up afterwards.

Under CI (``CI=true``) a missing service is a failure, never a skip.
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.harness import remove_image_tree

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
REDIS_URL = os.environ.get("GITPAAS_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def require(available: bool, what: str) -> None:
    """Skip the test when a service is missing, or fail it under CI."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"{what} is not available (CI=true: a missing service is a failure)")
    pytest.skip(f"{what} is not available")


def unique(prefix: str = "t") -> str:
    """A short unique lower-case name, usable as an instance or app name."""
    return prefix + secrets.token_hex(4)


@pytest.fixture(scope="session")
def redis_url() -> str:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
        ok = True
    except redis.RedisError:
        ok = False
    require(ok, f"Redis at {REDIS_URL}")
    return REDIS_URL


def remove_networks(instance: str) -> None:
    """The instance's Docker networks and build firewall chain, and the images tagged
    ``<instance>/...`` its builds made (if it made any)."""
    import docker

    from gitpaas.build.sandbox import remove_instance_networks

    try:
        client = docker.from_env(timeout=60)
        client.ping()
    except Exception:  # noqa: BLE001 - no Docker: nothing was made
        return
    try:
        remove_instance_networks(client, instance)
        for image in client.images.list(filters={"reference": f"{instance}/*"}):
            for tag in image.tags:
                with contextlib.suppress(docker.errors.APIError):
                    client.images.remove(tag, noprune=False)
    finally:
        client.close()


@pytest.fixture
def instance(redis_url):
    """A fresh instance name; its Redis keys are deleted afterwards."""
    import redis

    name = unique("t")
    yield name
    remove_networks(name)
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match=f"{name}:*", count=1000):
        client.delete(key)
    client.close()


@pytest.fixture(scope="session")
def docker_client():
    import docker

    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except Exception:  # noqa: BLE001 - any failure means "not available"
        client = None
    require(client is not None, "the Docker engine")
    yield client
    client.close()


def busybox_tar() -> bytes:
    """A root file system holding only a static busybox and its applet links."""
    busybox = shutil.which("busybox")
    require(busybox is not None, "busybox (Debian package busybox-static)")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d in ("bin", "tmp", "www", "etc"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755
            tar.addfile(info)
        tar.add(busybox, arcname="bin/busybox")
        applets = subprocess.run([busybox, "--list"], capture_output=True, text=True).stdout
        for applet in applets.split():
            if applet == "busybox":
                continue
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(info)
        passwd = b"root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n"
        info = tarfile.TarInfo("etc/passwd")
        info.size = len(passwd)
        tar.addfile(info, io.BytesIO(passwd))
    return buf.getvalue()


@pytest.fixture(scope="session")
def busybox_image(docker_client):
    """A local busybox image (no registry is reachable), removed at the end of the run."""
    name = f"gitpaas-test-{unique('b')}/busybox:latest"
    repo, tag = name.rsplit(":", 1)
    docker_client.api.import_image_from_data(busybox_tar(), repository=repo, tag=tag)
    yield name
    remove_image_tree(docker_client, name)


@pytest.fixture
def tmp_data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


MYSQL_ADMIN_URL = os.environ.get("GITPAAS_TEST_MYSQL_ADMIN_URL", "")


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    """An admin URL (CREATEDB CREATEROLE) for the test PostgreSQL (set by scripts/test)."""
    url = os.environ.get("GITPAAS_TEST_POSTGRES_ADMIN_URL", "")
    ok = False
    if url:
        import psycopg

        try:
            psycopg.connect(url, connect_timeout=5).close()
            ok = True
        except psycopg.Error:
            ok = False
    require(ok, "PostgreSQL (GITPAAS_TEST_POSTGRES_ADMIN_URL)")
    return url


@pytest.fixture(scope="session")
def mysql_admin_url() -> str:
    """An admin URL for the test MariaDB (set by scripts/test)."""
    ok = False
    if MYSQL_ADMIN_URL:
        from gitpaas.store.db import Database

        try:
            with Database(MYSQL_ADMIN_URL).transaction() as cur:
                cur.execute("SELECT 1")
            ok = True
        except Exception:  # noqa: BLE001
            ok = False
    require(ok, "MariaDB (GITPAAS_TEST_MYSQL_ADMIN_URL)")
    return MYSQL_ADMIN_URL


@pytest.fixture
def mysql_database(mysql_admin_url):
    """A fresh MySQL database URL, dropped afterwards."""
    from urllib.parse import urlparse

    from gitpaas.store.db import Database

    name = unique("gptest_")
    admin = Database(mysql_admin_url)
    with admin.transaction() as cur:
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    parsed = urlparse(mysql_admin_url)
    yield parsed._replace(path=f"/{name}").geturl()
    with admin.transaction() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
    admin.close()


@pytest.fixture(scope="session")
def base_images(docker_client):
    """Build (or find up to date) every base image; return the settings and the log."""
    require(shutil.which("mmdebstrap") is not None, "mmdebstrap (Debian package mmdebstrap)")
    from gitpaas import images
    from gitpaas.settings import Settings

    settings = Settings(instance=unique("t"))
    log: list[str] = []
    images.build_images(settings, progress=log.append, client=docker_client)
    return settings, log
