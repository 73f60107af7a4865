"""Offline base images: build ``images/<name>/image.yaml`` recipes with mmdebstrap.

Each recipe becomes a root file system tar (made by ``mmdebstrap`` from the host's Debian
mirrors, in a temporary directory removed afterwards) that is ``docker import``-ed as
``gitpaas-base/<name>:<hash>``, where ``<hash>`` is the first 12 digits of the recipe's
hash (also in the label ``gitpaas.recipe-hash``). Buildpacks use that exact tag, so
another checkout's build cannot move it under this one's feet; ``:latest`` also points at
the image last built or found up to date, for apps' own Dockerfiles
(``FROM gitpaas-base/wordpress``).
No Docker registry is involved at any point.

Base images are shared by every gitpaas instance on the Docker engine (they hold no app
data), so their names carry no instance prefix; being content-addressed, installs with
different recipes never fight over a name. Building an existing image again is skipped
unless ``force`` is given (use ``--force`` to pick up Debian security updates).

A recipe (``image.yaml``) holds:

``suite`` (required)
    Debian suite, e.g. ``bookworm``.
``variant``
    mmdebstrap variant: ``extract``, ``essential`` (default), ``apt``, ``minbase`` ...
``hooks``
    mmdebstrap hook directories by name (``/usr/share/mmdebstrap/hooks/<name>``).
``packages``
    Debian packages to install (recommends are never installed).
``mirrors``
    mmdebstrap mirror arguments; empty (default) means mmdebstrap's own default mirrors.
``run``
    Commands (argument lists) run inside the new root file system, in order.
``files``
    ``{src, dest, mode}``: files of the recipe directory put at ``dest`` (mode "0644"),
    before the ``run`` commands.
``env``, ``workdir``, ``cmd`` (argument list), ``user``
    The image's configuration.
``path_exclude``
    dpkg ``path-exclude`` patterns; defaults to documentation, man pages and locales.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from .errors import GitPaasError, InvalidInput, NotFound, ServiceError
from .settings import Settings

if TYPE_CHECKING:
    from docker import DockerClient

BASE_REPOSITORY = "gitpaas-base"
HASH_LABEL = "gitpaas.recipe-hash"
RECIPE_FILE = "image.yaml"
TAG_DIGITS = 12
HOOKS_DIR = Path("/usr/share/mmdebstrap/hooks")
# Bumped whenever the way a recipe is turned into an image changes: every image rebuilds.
BUILDER_VERSION = "2"
DEFAULT_PATH_EXCLUDE = (
    "/usr/share/doc/*",
    "/usr/share/man/*",
    "/usr/share/info/*",
    "/usr/share/locale/*",
    "/usr/share/lintian/*",
)
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
Progress = Callable[[str], None]


def default_images_dir() -> Path:
    """The ``images/`` directory shipped next to the ``gitpaas`` package."""
    return Path(__file__).resolve().parent.parent / "images"


def image_name(settings: Settings, buildpack: str, images_dir: Path | None = None) -> str:
    """The base image of ``buildpack``: its ``settings.base_images`` override, else the
    image of its recipe as it is now, ``gitpaas-base/<name>:<recipe hash>``."""
    override = settings.base_images.get(buildpack)
    return override or recipe_image_name(load_recipe(buildpack, images_dir))


def recipe_image_name(recipe: Recipe, repository: str = BASE_REPOSITORY) -> str:
    """The exact image of a recipe: ``<repository>/<name>:<first 12 digits of its hash>``.

    Content-addressed, so checkouts with different recipes can share one Docker engine
    without rebuilding each other's images.
    """
    return f"{repository}/{recipe.name}:{recipe_hash(recipe)[:TAG_DIGITS]}"


@dataclass(frozen=True)
class FileSpec:
    """A file of the recipe directory added to the image."""

    src: str
    dest: str
    mode: int = 0o644


@dataclass(frozen=True)
class Recipe:
    """One parsed ``images/<name>/image.yaml``."""

    name: str
    directory: Path
    suite: str
    variant: str = "essential"
    hooks: tuple[str, ...] = ()
    packages: tuple[str, ...] = ()
    mirrors: tuple[str, ...] = ()
    run: tuple[tuple[str, ...], ...] = ()
    files: tuple[FileSpec, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    workdir: str = ""
    cmd: tuple[str, ...] = ()
    user: str = ""
    path_exclude: tuple[str, ...] = DEFAULT_PATH_EXCLUDE


def recipe_names(images_dir: Path | None = None) -> list[str]:
    """Names of every recipe (directories holding an ``image.yaml``), sorted."""
    root = images_dir or default_images_dir()
    if not root.is_dir():
        return []
    return sorted(p.parent.name for p in root.glob(f"*/{RECIPE_FILE}"))


def load_recipe(name: str, images_dir: Path | None = None) -> Recipe:
    """Parse and check the recipe ``name``; raise ``NotFound`` or ``InvalidInput``."""
    root = images_dir or default_images_dir()
    path = root / name / RECIPE_FILE
    if "/" in name or name.startswith(".") or not path.is_file():
        known = ", ".join(recipe_names(root)) or "none"
        raise NotFound(f"no base image recipe named {name!r} (known: {known})")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidInput(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidInput(f"{path} must hold a mapping")
    try:
        return _recipe_from_data(name, path.parent, data)
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInput(f"invalid recipe {path}: {exc!r}") from exc


def _strings(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, list):
        raise TypeError(f"expected a list of strings, got {value!r}")
    return tuple(str(v) for v in value)


def _recipe_from_data(name: str, directory: Path, data: dict[str, Any]) -> Recipe:
    known = {f for f in Recipe.__dataclass_fields__ if f not in {"name", "directory"}}
    unknown = set(data) - known - {"description"}
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)}")
    files = tuple(
        FileSpec(str(f["src"]), str(f["dest"]), int(str(f.get("mode", "0644")), 8))
        for f in data.get("files") or []
    )
    for spec in files:
        src = (directory / spec.src).resolve()
        if directory.resolve() not in src.parents or not src.is_file():
            raise ValueError(f"file {spec.src!r} is not a file of the recipe directory")
        if not spec.dest.startswith("/"):
            raise ValueError(f"destination {spec.dest!r} must be absolute")
        if any(c.isspace() for c in str(src) + spec.dest):
            raise ValueError(f"file paths may not hold white space: {spec.src!r} {spec.dest!r}")
    return Recipe(
        name=name,
        directory=directory,
        suite=str(data["suite"]),
        variant=str(data.get("variant", "essential")),
        hooks=_strings(data.get("hooks")),
        packages=_strings(data.get("packages")),
        mirrors=_strings(data.get("mirrors")),
        run=tuple(_strings(cmd) for cmd in data.get("run") or []),
        files=files,
        env={str(k): str(v) for k, v in (data.get("env") or {}).items()},
        workdir=str(data.get("workdir") or ""),
        cmd=_strings(data.get("cmd")),
        user=str(data.get("user") or ""),
        path_exclude=_strings(data["path_exclude"])
        if "path_exclude" in data
        else DEFAULT_PATH_EXCLUDE,
    )


def _hashed(path: Path) -> bool:
    """Recipe files that count: not hidden files, editor backups or byte code."""
    name = path.name
    return path.is_file() and not name.startswith(".") and not name.endswith(("~", ".pyc"))


def recipe_hash(recipe: Recipe) -> str:
    """SHA-256 of the recipe directory's files (names and contents) and the builder's version.

    File modes do not count (checkouts differ by umask): a file's mode in the image is the
    recipe's ``mode``.
    """
    digest = hashlib.sha256(f"gitpaas-images {BUILDER_VERSION}\n".encode())
    for path in sorted(p for p in recipe.directory.rglob("*") if _hashed(p)):
        rel = path.relative_to(recipe.directory).as_posix()
        digest.update(f"{rel}\0".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def mmdebstrap_command(recipe: Recipe, output: Path) -> list[str]:
    """The mmdebstrap argument list that writes ``recipe``'s root file system to ``output``."""
    argv = [
        "mmdebstrap",
        f"--variant={recipe.variant}",
        "--aptopt=APT::Install-Recommends \"false\"",
        "--aptopt=APT::Install-Suggests \"false\"",
        "--format=tar",
    ]
    argv += [f"--dpkgopt=path-exclude={pattern}" for pattern in recipe.path_exclude]
    argv += [f"--hook-dir={HOOKS_DIR / hook}" for hook in recipe.hooks]
    if recipe.packages:
        argv.append(f"--include={','.join(recipe.packages)}")
    phase = _hook_phase(recipe)
    argv += _file_hooks(recipe, phase)
    argv += [_chroot_hook(cmd, phase) for cmd in recipe.run]
    argv += [recipe.suite, str(output), *recipe.mirrors]
    return argv


def _hook_phase(recipe: Recipe) -> str:
    """mmdebstrap skips customize hooks in the ``extract`` variant: use extract hooks there."""
    return "extract" if recipe.variant == "extract" else "customize"


def _chroot_hook(cmd: Sequence[str], phase: str = "customize") -> str:
    """A hook running ``cmd`` in the new root (mmdebstrap runs the string with sh)."""
    return f'--{phase}-hook=chroot "$1" {shlex.join(cmd)}'


def _file_hooks(recipe: Recipe, phase: str = "customize") -> list[str]:
    """Hooks adding the recipe's files (mmdebstrap's ``upload``), then setting their mode."""
    hooks = []
    for spec in recipe.files:
        source = (recipe.directory / spec.src).resolve()
        hooks.append(_chroot_hook(["mkdir", "-p", str(Path(spec.dest).parent)], phase))
        hooks.append(f"--{phase}-hook=upload {source} {spec.dest}")
        hooks.append(_chroot_hook(["chmod", f"{spec.mode:04o}", spec.dest], phase))
    return hooks


def import_changes(recipe: Recipe, digest: str) -> list[str]:
    """Dockerfile instructions applied by ``docker import`` (config and the hash label)."""
    env = {"PATH": DEFAULT_PATH, **recipe.env}
    changes = [f"ENV {key}={json.dumps(value)}" for key, value in env.items()]
    if recipe.workdir:
        changes.append(f"WORKDIR {recipe.workdir}")
    if recipe.user:
        changes.append(f"USER {recipe.user}")
    if recipe.cmd:
        changes.append(f"CMD {json.dumps(list(recipe.cmd))}")
    changes.append(f"LABEL {HASH_LABEL}={digest} gitpaas.recipe={recipe.name}")
    return changes


def _run_mmdebstrap(argv: Sequence[str], progress: Progress) -> None:
    """Run mmdebstrap, passing its progress lines on; raise ``ServiceError`` on failure."""
    if shutil.which(argv[0]) is None:
        raise ServiceError("mmdebstrap is not installed (Debian package mmdebstrap)")
    tail: list[str] = []
    with subprocess.Popen(
        list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, errors="replace",
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip()
            tail = (tail + [line])[-15:]
            if line.startswith(("I: success", "E:")):
                progress(f"       {line}")
    if proc.returncode != 0:
        raise ServiceError(f"mmdebstrap failed ({proc.returncode}):\n" + "\n".join(tail))


def _existing_hash(client: DockerClient, name: str) -> str | None:
    """The recipe hash label of image ``name``, or None when it does not exist."""
    import docker.errors

    try:
        image = client.images.get(name)
    except docker.errors.ImageNotFound:
        return None
    return (image.labels or {}).get(HASH_LABEL)


def _image_id(client: DockerClient, name: str) -> str | None:
    import docker.errors

    try:
        image_id: str | None = client.images.get(name).id
        return image_id
    except docker.errors.ImageNotFound:
        return None


def build_image(
    client: DockerClient,
    recipe: Recipe,
    repository: str = BASE_REPOSITORY,
    force: bool = False,
    progress: Progress = print,
) -> str | None:
    """Build one recipe as ``recipe_image_name``.

    Return the image built, or None when that image already existed (and not ``force``).
    """
    digest = recipe_hash(recipe)
    name = recipe_image_name(recipe, repository)
    if not force and _existing_hash(client, name) == digest:
        progress(f"-----> {name} is up to date")
        _tag_latest(client, name)
        return None
    progress(f"-----> Building {name} from images/{recipe.name} ({recipe.suite})")
    started = time.monotonic()
    old_id = _image_id(client, name)
    with tempfile.TemporaryDirectory(prefix="gitpaas-image-") as tmp:
        rootfs = Path(tmp) / "rootfs.tar"
        _run_mmdebstrap(mmdebstrap_command(recipe, rootfs), progress)
        progress(f"       importing {rootfs.stat().st_size // 2**20} MB")
        client.api.import_image_from_file(
            str(rootfs), repository=repository + "/" + recipe.name, tag=digest[:TAG_DIGITS],
            changes=import_changes(recipe, digest),
        )
    new_id = _image_id(client, name)
    if new_id is None or _existing_hash(client, name) != digest:
        raise ServiceError(f"docker import of {name} did not produce the expected image")
    if old_id and old_id != new_id:
        _remove_quietly(client, old_id)  # a forced rebuild replaced it
    _tag_latest(client, name)
    seconds = time.monotonic() - started
    progress(f"       {name} built in {seconds:.0f} s ({new_id[7:19]})")
    return name


def _tag_latest(client: DockerClient, name: str) -> None:
    """Also tag ``<repository>/<name>:latest``: the name an app's own Dockerfile uses
    (``FROM gitpaas-base/wordpress``). Buildpacks use the exact hash tag."""
    repository, _, _ = name.rpartition(":")
    client.images.get(name).tag(repository, "latest")


def _remove_quietly(client: DockerClient, image_id: str) -> None:
    """Remove a replaced image unless something (a container, a tag) still uses it."""
    import docker.errors

    try:
        client.images.remove(image_id, noprune=False)
    except docker.errors.APIError:
        pass


def require_image(client: DockerClient, settings: Settings, buildpack: str) -> str:
    """Return ``image_name(settings, buildpack)`` if the engine has it, else raise a
    ``ServiceError`` telling the operator what to run (for the deploy's build step)."""
    import docker.errors

    name = image_name(settings, buildpack)
    try:
        client.images.get(name)
    except docker.errors.ImageNotFound:
        if buildpack in settings.base_images:
            hint = f"it is set in base_images[{buildpack!r}]: load or build it on this host"
        else:
            hint = f"run `gitpaas images:build {buildpack}` on the gitpaas host"
        raise ServiceError(f"base image {name} is missing: {hint}") from None
    except docker.errors.DockerException as exc:
        raise ServiceError(f"Docker failed while looking for {name}: {exc}") from exc
    return name


def build_images(
    settings: Settings,
    names: list[str] | None = None,
    force: bool = False,
    progress: Progress = print,
    *,
    images_dir: Path | None = None,
    repository: str = BASE_REPOSITORY,
    client: DockerClient | None = None,
) -> list[str]:
    """Build the base images ``names`` (default: every recipe); return those (re)built.

    Images are named ``<repository>/<name>:<recipe hash>`` (see ``recipe_image_name``); an
    image that exists already is skipped unless ``force``.
    Images of older recipes are left alone: another checkout may still use them.
    ``settings.base_images`` overrides are not built: they name images the operator
    provides. Raises ``NotFound`` for an unknown name and ``ServiceError`` when mmdebstrap
    or Docker fails.
    """
    del settings  # base images are shared by every instance: no namespace to apply
    root = images_dir or default_images_dir()
    recipes = [load_recipe(n, root) for n in (names or recipe_names(root))]
    if not recipes:
        raise NotFound(f"no base image recipes in {root}")
    owns_client = client is None
    client = client or _docker_client()
    built: list[str] = []
    try:
        for recipe in recipes:
            name = build_image(client, recipe, repository, force=force, progress=progress)
            if name:
                built.append(name)
    except GitPaasError:
        raise
    except Exception as exc:
        import docker.errors

        if isinstance(exc, docker.errors.DockerException):
            raise ServiceError(f"Docker failed while building base images: {exc}") from exc
        raise
    finally:
        if owns_client:
            client.close()
    return built


def _docker_client() -> DockerClient:
    import docker
    import docker.errors

    try:
        client = docker.from_env(timeout=600)
        client.ping()
    except docker.errors.DockerException as exc:
        raise ServiceError(f"the Docker engine is not reachable: {exc}") from exc
    return client


def main(argv: Iterable[str] | None = None) -> int:
    """``gitpaas images:build [NAME ...] [--force]``: build the offline base images."""
    import argparse

    from . import settings as settings_module

    parser = argparse.ArgumentParser(
        prog="gitpaas images:build",
        description="Build the offline base images (images/<name>/image.yaml) with mmdebstrap.",
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help="recipes (default: all)")
    parser.add_argument("--force", action="store_true", help="rebuild unchanged recipes too")
    args = parser.parse_args(list(argv) if argv is not None else None)
    try:
        settings = settings_module.load()
        built = build_images(settings, args.names or None, force=args.force)
    except GitPaasError as exc:
        print(f" !     {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"-----> {len(built)} image(s) built")
    return 0


if __name__ == "__main__":
    sys.exit(main())
