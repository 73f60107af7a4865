"""Base images built with mmdebstrap, and each buildpack serving a sample app.

The ``gitpaas-base/*`` images are the install's and stay after the run (built once, then
skipped by their recipe hash); everything else a test creates is removed.
"""

from __future__ import annotations

import base64
import hashlib
import io
import shutil
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest

from gitpaas import images
from gitpaas.build import buildpacks
from gitpaas.settings import Settings
from tests.conftest import require, unique

pytestmark = pytest.mark.docker
APPS = Path(__file__).resolve().parent.parent / "apps"


@pytest.fixture(scope="session")
def base_images(docker_client):
    """Build (or find up to date) every base image; return the settings and the log."""
    require(shutil.which("mmdebstrap") is not None, "mmdebstrap (Debian package mmdebstrap)")
    settings = Settings(instance=unique("t"))
    log: list[str] = []
    images.build_images(settings, progress=log.append, client=docker_client)
    return settings, log


def _ids(client, names):
    return {name: client.images.get(name).id for name in names}


def test_every_recipe_is_built_and_a_second_build_is_skipped(docker_client, base_images):
    settings, _ = base_images
    names = [images.image_name(settings, n) for n in images.recipe_names()]
    assert set(images.recipe_names()) >= {"python", "node", "php", "static"}
    before = _ids(docker_client, names)
    log: list[str] = []
    started = time.monotonic()
    assert images.build_images(settings, progress=log.append, client=docker_client) == []
    assert time.monotonic() - started < 10
    assert _ids(docker_client, names) == before
    assert sum("up to date" in line for line in log) == len(names)
    for name in images.recipe_names():
        labels = docker_client.images.get(images.image_name(settings, name)).labels
        assert labels[images.HASH_LABEL] == images.recipe_hash(images.load_recipe(name))


def test_a_recipe_builds_from_zero_skips_and_rebuilds_on_force(docker_client):
    """The small static recipe, under a throwaway repository name: a real build every run."""
    require(shutil.which("mmdebstrap") is not None, "mmdebstrap (Debian package mmdebstrap)")
    repository = f"gitpaas-test-{unique('r')}"
    name = images.default_image_name("static", repository)
    settings = Settings()
    try:
        built = images.build_images(
            settings, ["static"], progress=lambda _: None, repository=repository,
            client=docker_client,
        )
        assert built == [name]
        first = docker_client.images.get(name)
        assert first.labels[images.HASH_LABEL] == images.recipe_hash(
            images.load_recipe("static")
        )
        assert first.attrs["Config"]["WorkingDir"] == "/app"
        again = images.build_images(
            settings, ["static"], progress=lambda _: None, repository=repository,
            client=docker_client,
        )
        assert again == []
        forced = images.build_images(
            settings, ["static"], force=True, progress=lambda _: None,
            repository=repository, client=docker_client,
        )
        assert forced == [name]
        assert docker_client.images.get(name).id != first.id
        out = docker_client.containers.run(name, ["httpd", "--help"], remove=True, stderr=True)
        assert b"httpd" in out
    finally:
        try:
            docker_client.images.remove(name, force=True)
        except Exception:  # noqa: BLE001
            pass


def make_wheel(name: str, version: str, module: str, source: str) -> tuple[str, bytes]:
    """A minimal pure-python wheel (PEP 427) holding one module, made without pip."""
    dist = f"{name.replace('-', '_')}-{version}"
    files = {
        f"{module}.py": source.encode(),
        f"{dist}.dist-info/METADATA": (
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        ).encode(),
        f"{dist}.dist-info/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: gitpaas-tests\nRoot-Is-Purelib: true\n"
            b"Tag: py3-none-any\n"
        ),
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{dist}.dist-info/RECORD,,")
    files[f"{dist}.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path, data in files.items():
            zf.writestr(path, data)
    return f"{dist}-py3-none-any.whl", buf.getvalue()


HELLO_WHEEL = make_wheel(
    "gitpaas-hello", "1.0", "gitpaas_hello",
    'def greet(who):\n    return f"hello from {who} via gitpaas_hello"\n',
)


def context_tar(app_dir: Path, dockerfile: bytes, extra: dict[str, bytes]) -> io.BytesIO:
    """A build context: the app's files, extra files and the buildpack's Dockerfile."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path in sorted(app_dir.rglob("*")):
            tar.add(path, arcname=path.relative_to(app_dir).as_posix(), recursive=False)
        for arcname, data in {**extra, "Dockerfile": dockerfile}.items():
            info = tarfile.TarInfo(arcname)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


def fetch(url: str, container, timeout: float = 30.0) -> str:
    """GET ``url`` until it answers 200; fail early with the logs if the container exits."""
    deadline = time.monotonic() + timeout
    error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310
                return response.read().decode()
        except (urllib.error.URLError, ConnectionError, OSError) as exc:
            error = exc
        container.reload()
        if container.status == "exited":
            pytest.fail(f"container exited: {container.logs().decode(errors='replace')}")
        time.sleep(0.3)
    pytest.fail(f"no answer from {url}: {error}\n{container.logs().decode(errors='replace')}")


EXPECTED = {
    "static": "hello from static",
    "python": "hello from python via gitpaas_hello",
    "node": "hello from node v",
    "php": "hello from php 42",
}


@pytest.mark.parametrize("name", buildpacks.BUILDPACKS)
def test_buildpack_serves_its_sample_app(docker_client, base_images, name):
    import docker.errors

    settings, _ = base_images
    app_dir = APPS / name
    files = [p.relative_to(app_dir).as_posix() for p in app_dir.rglob("*")]
    extra: dict[str, bytes] = {}
    if name == "python":
        wheel_name, wheel = HELLO_WHEEL
        extra[f"wheels/{wheel_name}"] = wheel
        files.append(f"wheels/{wheel_name}")
    detection = buildpacks.detect(files)
    assert detection.name == name
    tag = f"gitpaas-test-{unique('a')}/{name}:latest"
    container = None
    try:
        try:
            image, _ = docker_client.images.build(
                fileobj=context_tar(app_dir, buildpacks.dockerfile(name), extra),
                custom_context=True, tag=tag, rm=True, forcerm=True,
                buildargs=buildpacks.build_args(name, settings),
            )
        except docker.errors.BuildError as exc:
            log = "".join(str(chunk.get("stream", chunk)) for chunk in exc.build_log)
            pytest.fail(f"build of the {name} sample failed: {exc}\n{log}")
        assert "PORT" not in " ".join(image.attrs["Config"].get("Env") or [])
        container = docker_client.containers.run(
            tag, detach=True, environment={"PORT": "5000"},
            ports={"5000/tcp": ("127.0.0.1", None)},
        )
        container.reload()
        host_port = container.ports["5000/tcp"][0]["HostPort"]
        body = fetch(f"http://127.0.0.1:{host_port}/", container)
        assert EXPECTED[name] in body
    finally:
        if container is not None:
            container.remove(force=True)
        try:
            docker_client.images.remove(tag, force=True)
        except docker.errors.ImageNotFound:
            pass
