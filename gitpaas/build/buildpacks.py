"""Buildpacks: which Dockerfile builds an app, detected from its files.

A buildpack is a Dockerfile in ``buildpacks/<name>/Dockerfile`` that starts with
``ARG BASE_IMAGE`` / ``FROM ${BASE_IMAGE}`` and copies the app into ``/app``; the base
image comes from ``images/`` (see ``gitpaas.images``). Detection looks only at the files in
the repository's root (plus ``public/index.php`` and ``public/index.html``), in this
priority order (the first match wins):

1. ``dockerfile``: a ``Dockerfile`` (the app's own build; no buildpack is added)
2. ``python``: ``requirements.txt``, ``pyproject.toml`` or ``setup.py``
3. ``node``: ``package.json``
4. ``php``: ``composer.json``, any ``*.php`` file, or ``public/index.php``
5. ``static``: ``index.html`` or ``public/index.html`` (last: many apps carry an
   index.html that is not the app)

A forced buildpack (e.g. from the app's ``BUILDPACK`` setting) skips detection.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import InvalidInput, NotFound, UserError
from ..images import image_name
from ..settings import Settings

DOCKERFILE = "dockerfile"
BUILDPACKS = ("python", "node", "php", "static")
KNOWN = (DOCKERFILE, *BUILDPACKS)


@dataclass(frozen=True)
class Detection:
    """The chosen buildpack and why, e.g. ``Detection("python", "found requirements.txt")``."""

    name: str
    reason: str


def default_buildpacks_dir() -> Path:
    """The ``buildpacks/`` directory shipped next to the ``gitpaas`` package."""
    return Path(__file__).resolve().parent.parent.parent / "buildpacks"


def _normalized(paths: Iterable[str]) -> set[str]:
    """Repo-relative POSIX paths without ``./`` or leading ``/``."""
    names = set()
    for path in paths:
        parts = tuple(p for p in PurePosixPath(path.lstrip("/")).parts if p != ".")
        if parts:
            names.add("/".join(parts))
    return names


def _first(names: set[str], candidates: Iterable[str]) -> str | None:
    return next((c for c in candidates if c in names), None)


def _php_file(names: set[str]) -> str | None:
    root_php = (n for n in names if n.endswith(".php") and "/" not in n)
    return _first(names, ["composer.json"]) or min(root_php, default=None) or _first(
        names, ["public/index.php"]
    )


RULES: tuple[tuple[str, Callable[[set[str]], str | None]], ...] = (
    (DOCKERFILE, lambda names: _first(names, ["Dockerfile"])),
    ("python", lambda names: _first(names, ["requirements.txt", "pyproject.toml", "setup.py"])),
    ("node", lambda names: _first(names, ["package.json"])),
    ("php", _php_file),
    ("static", lambda names: _first(names, ["index.html", "public/index.html"])),
)
LOOKS_FOR = (
    "Dockerfile, requirements.txt/pyproject.toml/setup.py, package.json, "
    "composer.json/*.php or index.html"
)


def detect(paths: Iterable[str], forced: str | None = None) -> Detection:
    """Choose the buildpack of a repository from its file paths (POSIX, repo-relative).

    ``forced`` names a buildpack to use without detection (``dockerfile`` still needs a
    Dockerfile). Raises ``UserError`` when nothing matches or ``forced`` is unknown.
    """
    names = _normalized(paths)
    if forced:
        if forced not in KNOWN:
            raise InvalidInput(f"unknown buildpack {forced!r}: choose one of {', '.join(KNOWN)}")
        if forced == DOCKERFILE and "Dockerfile" not in names:
            raise UserError("buildpack 'dockerfile' needs a Dockerfile in the repository root")
        return Detection(forced, "chosen explicitly")
    for name, rule in RULES:
        found = rule(names)
        if found:
            return Detection(name, f"found {found}")
    raise UserError(f"cannot tell how to build this app: add one of {LOOKS_FOR}")


def dockerfile(name: str, buildpacks_dir: Path | None = None) -> bytes:
    """The Dockerfile of buildpack ``name`` (not for ``dockerfile``: the app has its own)."""
    if name == DOCKERFILE:
        raise InvalidInput("the 'dockerfile' buildpack uses the repository's own Dockerfile")
    path = (buildpacks_dir or default_buildpacks_dir()) / name / "Dockerfile"
    if name not in BUILDPACKS or not path.is_file():
        raise NotFound(f"no buildpack named {name!r}")
    return path.read_bytes()


def build_args(name: str, settings: Settings) -> dict[str, str]:
    """Docker build arguments of buildpack ``name``: only ``BASE_IMAGE``.

    Config vars are never build arguments (they reach containers at run time only).
    """
    if name == DOCKERFILE:
        return {}
    return {"BASE_IMAGE": image_name(settings, name)}
