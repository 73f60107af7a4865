"""storage, storage:mount, storage:unmount: persistent directories kept across releases.

The rule for HOSTDIR (checked after resolving symbolic links and ``..``):

- a relative path (``uploads``) means ``<data_dir>/storage/<app>/uploads``, created on
  mount; any absolute path inside ``<data_dir>/storage/<app>/`` is the same;
- an absolute path elsewhere must lie inside one of the ``storage_roots`` an admin set
  in the settings, must exist already, and only an admin may mount it.

CONTAINERDIR is an absolute, normalised path other than ``/`` and outside ``/proc``,
``/sys`` and ``/dev``. Mounts apply from the next release (deploy, config change,
ps:restart); ``apps:destroy`` removes ``<data_dir>/storage/<app>/``.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path

from ..errors import Conflict, Forbidden, InvalidInput
from ..store import App
from .args import no_more, pop_flag, take_app
from .registry import Context, command

COMPONENT_RE = re.compile(r"[A-Za-z0-9._@+-]{1,255}")
FORBIDDEN_TARGETS = ("/proc", "/sys", "/dev")


def app_storage(data_storage: Path, app: str) -> Path:
    """``<data_dir>/storage/<app>``, resolved."""
    return (data_storage / app).resolve()


def _components_ok(path: str) -> bool:
    parts = [p for p in path.split("/") if p]
    return bool(parts) and all(COMPONENT_RE.fullmatch(p) and p not in {".", ".."}
                               for p in parts)


def container_dir(value: str) -> str:
    """Check CONTAINERDIR: absolute, normalised, not / nor under /proc, /sys, /dev."""
    if not value.startswith("/") or posixpath.normpath(value) != value or "//" in value \
            or not _components_ok(value):
        raise InvalidInput(f"invalid container directory {value!r}: an absolute path such as"
                           " /var/lib/wordpress/wp-content/uploads")
    if any(value == t or value.startswith(t + "/") for t in FORBIDDEN_TARGETS):
        raise InvalidInput(f"cannot mount over {value}")
    return value


def host_dir(value: str, storage: Path, roots: list[Path]) -> tuple[Path, bool]:
    """Resolve HOSTDIR; return (path, inside the app's own storage)."""
    if not _components_ok(value):
        raise InvalidInput(f"invalid host directory {value!r}")
    path = (Path(value) if value.startswith("/") else storage / value).resolve()
    if storage in path.parents:
        return path, True
    for root in roots:
        if root.resolve() in path.parents:
            return path, False
    raise Forbidden(f"{value} is outside {storage}/ and the storage_roots an admin allowed")


def parse_mount(ctx: Context, app: App, spec: str) -> tuple[Path, str, bool]:
    """``HOSTDIR:CONTAINERDIR`` -> (host path, container path, own storage)."""
    host, sep, target = spec.partition(":")
    if not sep or ":" in target or "," in spec:
        raise InvalidInput(f"expected HOSTDIR:CONTAINERDIR, got {spec!r}")
    settings = ctx.platform.settings
    roots = [Path(r.strip()) for r in settings.storage_roots.split(",") if r.strip()]
    storage = app_storage(settings.storage_dir, app.name)
    path, own = host_dir(host, storage, [r for r in roots if r.is_absolute()])
    return path, container_dir(target), own


def _one_spec(ctx: Context, args: list[str], verb: str) -> tuple[App, str]:
    app = take_app(ctx, args, rest=1)
    if len(args) != 1:
        raise InvalidInput(f"usage: storage:{verb} [APP] HOSTDIR:CONTAINERDIR")
    return app, args.pop()


@command("storage", "storage [APP] [--json]")
def storage_list(ctx: Context, args: list[str]) -> None:
    """List the app's persistent directories (host directory -> container directory)."""
    as_json = pop_flag(args, "--json")
    app = take_app(ctx, args, only_positional=True)
    no_more(args)
    mounts = ctx.platform.store.mounts(app.name)
    if as_json:
        ctx.json([{"host": m.host_path, "container": m.container_path} for m in mounts])
        return
    ctx.out(f"=== {app.name} Storage")
    for m in mounts:
        ctx.out(f"{m.host_path}:{m.container_path}")


@command("storage:mount", "storage:mount [APP] HOSTDIR:CONTAINERDIR")
def storage_mount(ctx: Context, args: list[str]) -> None:
    """Bind a persistent directory into the app's containers (from the next release)."""
    app, spec = _one_spec(ctx, args, "mount")
    path, target, own = parse_mount(ctx, app, spec)
    for m in ctx.platform.store.mounts(app.name):
        other = Path(m.host_path)
        if other == path or other in path.parents or path in other.parents:
            # Nested binds let a container swap the inner directory for a symlink that
            # Docker would follow at the next start (anywhere on the host).
            raise Conflict(f"{path} overlaps {other}, mounted already: mount neither inside"
                           " the other")
    if own:
        path.mkdir(parents=True, exist_ok=True)
    else:
        ctx.require_admin()
        if not path.is_dir():
            raise InvalidInput(f"{path} is not a directory")
    ctx.platform.store.add_mount(app.name, str(path), target)
    ctx.platform.store.record_event(ctx.key.name, "storage:mount", app.name,
                                    f"{path}:{target}")
    ctx.out(f"Mounting {path} at {target} in {app.name}... done"
            " (from the next release: deploy or ps:restart)")


@command("storage:unmount", "storage:unmount [APP] HOSTDIR:CONTAINERDIR")
def storage_unmount(ctx: Context, args: list[str]) -> None:
    """Stop binding a directory into the app's containers (its files are kept)."""
    app, spec = _one_spec(ctx, args, "unmount")
    path, target, _ = parse_mount(ctx, app, spec)
    ctx.platform.store.remove_mount(app.name, str(path), target)
    ctx.platform.store.record_event(ctx.key.name, "storage:unmount", app.name,
                                    f"{path}:{target}")
    ctx.out(f"Unmounting {path} from {target} in {app.name}... done"
            " (from the next release: deploy or ps:restart; the files are kept)")
