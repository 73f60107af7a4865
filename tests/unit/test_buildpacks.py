"""Buildpack detection, Dockerfiles and build arguments (no Docker needed)."""

from __future__ import annotations

import pytest

from gitpaas import images
from gitpaas.build import buildpacks
from gitpaas.build.buildpacks import Detection, build_args, detect, dockerfile
from gitpaas.errors import InvalidInput, NotFound, UserError
from gitpaas.settings import Settings


@pytest.mark.parametrize(
    ("paths", "expected"),
    [
        (["index.html"], Detection("static", "found index.html")),
        (["requirements.txt", "app.py"], Detection("python", "found requirements.txt")),
        (["pyproject.toml"], Detection("python", "found pyproject.toml")),
        (["setup.py"], Detection("python", "found setup.py")),
        (["package.json", "server.js"], Detection("node", "found package.json")),
        (["composer.json"], Detection("php", "found composer.json")),
        (["b.php", "a.php"], Detection("php", "found a.php")),
        (["Dockerfile", "requirements.txt"], Detection("dockerfile", "found Dockerfile")),
        (["public/index.html"], Detection("static", "found public/index.html")),
        (["public/index.php", "src/a.php"], Detection("php", "found public/index.php")),
    ],
)
def test_detects_each_buildpack(paths, expected):
    assert detect(paths) == expected


@pytest.mark.parametrize(
    ("paths", "name"),
    [
        (["Dockerfile", "package.json", "index.php", "index.html"], "dockerfile"),
        (["requirements.txt", "package.json", "index.php", "index.html"], "python"),
        (["package.json", "index.php", "index.html"], "node"),
        (["index.php", "index.html"], "php"),
        (["composer.json", "index.html"], "php"),
    ],
)
def test_priority_order(paths, name):
    assert detect(paths).name == name


def test_only_root_files_count():
    paths = ["docs/Dockerfile", "vendor/lib/requirements.txt", "web/x.php", "a/index.html",
             "index.html"]
    assert detect(paths) == Detection("static", "found index.html")


def test_dot_slash_prefixes_and_generators_are_accepted():
    assert detect(p for p in ["./package.json", "./lib/a.js"]).name == "node"


def test_forced_buildpack_wins():
    assert detect(["Dockerfile", "index.html"], forced="python") == Detection(
        "python", "chosen explicitly"
    )


def test_forced_dockerfile_needs_a_dockerfile():
    with pytest.raises(UserError, match="Dockerfile"):
        detect(["index.html"], forced="dockerfile")
    assert detect(["Dockerfile"], forced="dockerfile").name == "dockerfile"


def test_forced_unknown_buildpack_is_rejected():
    with pytest.raises(InvalidInput, match="unknown buildpack 'ruby'"):
        detect(["index.html"], forced="ruby")


def test_unknown_app_says_what_it_looks_for():
    with pytest.raises(UserError) as info:
        detect(["README.md", "src/main.rs", "docs/index.html", "src/x.php", "lib/package.json"])
    message = str(info.value)
    assert "\n" not in message
    for marker in ("Dockerfile", "requirements.txt", "package.json", "composer.json", "index.html"):
        assert marker in message


def test_empty_repository_is_a_user_error():
    with pytest.raises(UserError):
        detect([])


@pytest.mark.parametrize("name", buildpacks.BUILDPACKS)
def test_each_buildpack_has_a_dockerfile_on_its_base_image(name):
    text = dockerfile(name).decode()
    assert "ARG BASE_IMAGE" in text
    assert "FROM ${BASE_IMAGE}" in text
    assert "COPY . /app" in text
    assert text.index("ARG BASE_IMAGE") < text.index("FROM ${BASE_IMAGE}")


def test_dockerfile_of_unknown_or_dockerfile_buildpack():
    with pytest.raises(NotFound):
        dockerfile("ruby")
    with pytest.raises(NotFound):
        dockerfile("../images")
    with pytest.raises(InvalidInput):
        dockerfile("dockerfile")


def test_build_args_use_the_base_image_and_its_override():
    python = images.image_name(Settings(), "python")
    assert python.startswith("gitpaas-base/python:")
    assert build_args("python", Settings()) == {"BASE_IMAGE": python}
    settings = Settings(base_images={"python": "acme/python:3.12"})
    assert build_args("python", settings) == {"BASE_IMAGE": "acme/python:3.12"}
    assert build_args("node", settings) == {"BASE_IMAGE": images.image_name(settings, "node")}
    assert build_args("dockerfile", settings) == {}
