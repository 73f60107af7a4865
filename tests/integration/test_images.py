"""Base images built with mmdebstrap, and each buildpack serving a sample app.

The ``gitpaas-base/*`` images are the install's and stay after the run (built once, then
skipped by their recipe hash); everything else a test creates is removed.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from gitpaas import images
from gitpaas.build import buildpacks
from gitpaas.errors import ServiceError
from gitpaas.settings import Settings
from tests.conftest import require, unique
from tests.samples import EXPECTED, sample_app

# Building every base image from zero takes 2-3 minutes on 2 cores, inside the setup of
# whichever test first uses the session fixture: more than the default 300 s timeout allows
# on a slow mirror.
pytestmark = [pytest.mark.docker, pytest.mark.timeout(1200)]


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
    recipe = images.load_recipe("static")
    name = images.recipe_image_name(recipe, repository)
    settings = Settings()
    container = None

    def build(force: bool = False) -> list[str]:
        return images.build_images(
            settings, ["static"], force=force, progress=lambda _: None,
            repository=repository, client=docker_client,
        )

    try:
        assert build() == [name]
        first = docker_client.images.get(name)
        assert first.labels[images.HASH_LABEL] == images.recipe_hash(recipe)
        assert first.attrs["Config"]["WorkingDir"] == "/app"
        assert build() == []
        assert build(force=True) == [name]
        second = docker_client.images.get(name)
        assert second.id != first.id
        container = docker_client.containers.create(name, ["which", "httpd"])
        container.start()
        assert container.wait(timeout=30)["StatusCode"] == 0
        assert container.logs().strip() == b"/usr/sbin/httpd"
    finally:
        if container is not None:
            container.remove(force=True)
        for image in docker_client.images.list(name=f"{repository}/static"):
            docker_client.images.remove(image.id, force=True)


def test_require_image_names_the_missing_image_and_the_fix(docker_client, base_images):
    settings, _ = base_images
    assert images.require_image(docker_client, settings, "static") == images.image_name(
        settings, "static"
    )
    missing = Settings(base_images={"php": f"gitpaas-test-{unique('m')}/php:1"})
    with pytest.raises(ServiceError, match=r"base image .*php:1 is missing: it is set in"):
        images.require_image(docker_client, missing, "php")


def context_tar(files: dict[str, bytes], dockerfile: bytes) -> io.BytesIO:
    """A build context: the app's files plus the buildpack's Dockerfile."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for arcname, data in {**files, "Dockerfile": dockerfile}.items():
            info = tarfile.TarInfo(arcname)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


def get(url: str, container, timeout: float = 30.0) -> tuple[int, str]:
    """GET ``url`` until the app answers; fail early with the logs if the container exits."""
    deadline = time.monotonic() + timeout
    error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")
        except (urllib.error.URLError, ConnectionError, OSError) as exc:
            error = exc
        container.reload()
        if container.status == "exited":
            pytest.fail(f"container exited: {container.logs().decode(errors='replace')}")
        time.sleep(0.3)
    pytest.fail(f"no answer from {url}: {error}\n{container.logs().decode(errors='replace')}")


@contextlib.contextmanager
def running_app(client, settings: Settings, files: dict[str, bytes]) -> Iterator[Any]:
    """Build ``files`` with the detected buildpack (no network), run it with PORT=5000
    published on 127.0.0.1; yield a ``get(path)`` function. Image and container are removed."""
    import docker.errors

    name = buildpacks.detect(files).name
    tag = f"gitpaas-test-{unique('a')}/{name}:latest"
    container = None
    try:
        try:
            image, _ = client.images.build(
                fileobj=context_tar(files, buildpacks.dockerfile(name)),
                custom_context=True, tag=tag, rm=True, forcerm=True,
                buildargs=buildpacks.build_args(name, settings),
                network_mode="none",  # proves the build needs no network at all
            )
        except docker.errors.BuildError as exc:
            log = "".join(str(chunk.get("stream", chunk)) for chunk in exc.build_log)
            pytest.fail(f"build of the {name} app failed: {exc}\n{log}")
        env = " ".join(image.attrs["Config"].get("Env") or [])
        assert "PORT=" not in env, "PORT must come at run time, never at build time"
        container = client.containers.create(
            tag, environment={"PORT": "5000"}, ports={"5000/tcp": ("127.0.0.1", None)},
        )
        container.start()
        container.reload()
        binding = container.ports["5000/tcp"][0]
        assert binding["HostIp"] == "127.0.0.1"
        base = f"http://127.0.0.1:{binding['HostPort']}"
        yield lambda path="/": get(base + path, container)
    finally:
        if container is not None:
            container.remove(force=True)
        try:
            client.images.remove(tag, force=True)
        except docker.errors.ImageNotFound:
            pass




@pytest.mark.parametrize("name", buildpacks.BUILDPACKS)
def test_buildpack_serves_its_sample_app(docker_client, base_images, name):
    settings, _ = base_images
    files = sample_app(name)
    assert buildpacks.detect(files).name == name
    with running_app(docker_client, settings, files) as fetch:
        status, body = fetch()
        assert status == 200
        assert EXPECTED[name] in body


def test_static_serves_public_when_present(docker_client, base_images):
    files = {"index.html": b"root", "public/index.html": b"hello from public"}
    with running_app(docker_client, base_images[0], files) as fetch:
        assert fetch() == (200, "hello from public")


def test_php_runs_from_public_and_hides_dotfiles(docker_client, base_images):
    files = {
        "composer.json": b"{}",
        "public/index.php": b"<?php echo 'public ' . (6 * 7);",
        "public/.env": b"SECRET=1",
    }
    with running_app(docker_client, base_images[0], files) as fetch:
        assert fetch() == (200, "public 42")
        assert fetch("/.env")[0] == 403


def test_node_runs_the_start_script(docker_client, base_images):
    files = {
        "package.json": b'{"name": "x", "scripts": {"start": "node other.js"}}',
        "other.js": (
            b"require('http').createServer((q, r) => r.end('started by the start script'))"
            b".listen(Number(process.env.PORT));"
        ),
    }
    with running_app(docker_client, base_images[0], files) as fetch:
        assert fetch() == (200, "started by the start script")


def test_python_without_requirements_runs_main_py(docker_client, base_images):
    files = {
        "pyproject.toml": b"[tool.ruff]\nline-length = 100\n",  # tool config only
        "main.py": (
            b"import http.server, os\n"
            b"class H(http.server.BaseHTTPRequestHandler):\n"
            b"    def do_GET(self):\n"
            b"        self.send_response(200); self.end_headers(); self.wfile.write(b'main.py')\n"
            b"http.server.HTTPServer(('', int(os.environ['PORT'])), H).serve_forever()\n"
        ),
    }
    with running_app(docker_client, base_images[0], files) as fetch:
        assert fetch() == (200, "main.py")
