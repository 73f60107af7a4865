"""storage, storage:mount, storage:unmount: persistent storage kept across releases.

SOURCE in ``SOURCE:CONTAINERDIR`` is either

- a name (``uploads``: 1-64 of A-Z a-z 0-9 _ -): the app's own Docker volume
  ``<instance>.<app>.uploads``, made by gitpaas, mounted by name, removed by
  ``apps:destroy``. This is what tenants use; or
- (admins only) an absolute host directory inside one of the ``storage_roots`` an admin
  set in the settings, which must exist already. It is bound by path.

A name is never a path: no tenant's mount is ever resolved through a host directory a
container could have written (docs/security.md, "Storage").

CONTAINERDIR is an absolute, normalised path other than ``/`` and outside ``/proc``,
``/sys`` and ``/dev``, neither inside nor above another mount's. Mounts apply from the
next release (deploy, config change, ps:restart).
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path

from .. import names
from ..errors import Conflict, Forbidden, InvalidInput, NotFound
from ..services.hosts import storage_node
from ..store import Mount
from .registry import Context, command
from .spec import APP, Arg, Flag, Parsed

COMPONENT_RE = re.compile(r"[A-Za-z0-9._@+-]{1,255}")
FORBIDDEN_TARGETS = ("/proc", "/sys", "/dev")


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


def _nested(a: str, b: str) -> bool:
    return a == b or a.startswith(b.rstrip("/") + "/") or b.startswith(a.rstrip("/") + "/")


def admin_host_dir(value: str, roots: list[Path]) -> Path:
    """An admin's absolute HOSTDIR: resolved, inside one of ``roots``."""
    if not _components_ok(value):
        raise InvalidInput(f"invalid host directory {value!r}")
    path = Path(value).resolve()
    for root in roots:
        if root.resolve() in path.parents:
            return path
    raise Forbidden(f"{value} is outside the storage_roots an admin allowed")


def _split(spec: str) -> tuple[str, str]:
    source, sep, target = spec.partition(":")
    if not sep or ":" in target or "," in spec:
        raise InvalidInput(f"expected NAME:CONTAINERDIR, got {spec!r}")
    return source, container_dir(target)


def parse_mount(ctx: Context, spec: str) -> tuple[str, str, bool]:
    """``SOURCE:CONTAINERDIR`` -> (volume name or host path, container path, is a volume).

    Host paths are for admins: anyone else is refused before the path is even looked at.
    """
    source, target = _split(spec)
    if not source.startswith("/"):
        return names.storage_name(source), target, True
    if not ctx.key.is_admin:
        raise Forbidden("only an admin may bind a host directory; name your storage"
                        " instead (uploads:/data): each name is a volume of the app's own")
    settings = ctx.platform.settings
    roots = [Path(r.strip()) for r in settings.storage_roots.split(",") if r.strip()]
    return str(admin_host_dir(source, [r for r in roots if r.is_absolute()])), target, False


def _volume(ctx: Context, app: str, m: Mount) -> str | None:
    if m.host_path.startswith("/"):
        return None
    return f"{ctx.platform.settings.instance}.{app}.{m.host_path}"


MOUNT = Arg("NAME:CONTAINERDIR")


@command("storage", Flag("--json"), app=APP)
def storage_list(ctx: Context, p: Parsed) -> None:
    """List the app's storage (NAME or host directory -> container directory)."""
    as_json = p.flag("--json")
    app = p.the_app
    mounts = ctx.platform.store.mounts(app.name)
    if as_json:
        ctx.json([{"host": m.host_path, "container": m.container_path,
                   "volume": _volume(ctx, app.name, m)} for m in mounts])
        return
    ctx.out(f"=== {app.name} Storage")
    for m in mounts:
        ctx.out(f"{m.host_path}:{m.container_path}")
    pinned = storage_node(ctx.platform, app.name)
    if pinned:
        ctx.out(f"pinned to node {pinned}: the storage lives there, so do the replicas")


@command("storage:mount", MOUNT, app=APP)
def storage_mount(ctx: Context, p: Parsed) -> None:
    """Mount the app's volume NAME into its containers (from the next release)."""
    app, spec = p.the_app, p.required(MOUNT.metavar)
    source, target, volume = parse_mount(ctx, spec)
    for m in ctx.platform.store.mounts(app.name):
        if _nested(m.container_path, target):
            raise Conflict(f"{target} overlaps {m.container_path}, mounted already: mount"
                           " neither inside the other")
        if not volume and m.host_path.startswith("/") and _nested(m.host_path, source):
            # Nested binds let a container swap the inner directory for a symlink that
            # Docker would follow at the next start (anywhere on the host).
            raise Conflict(f"{source} overlaps {m.host_path}, mounted already: mount"
                           " neither inside the other")
    if not volume and not Path(source).is_dir():
        raise InvalidInput(f"{source} is not a directory")
    ctx.platform.store.add_mount(app.name, source, target)
    ctx.platform.store.record_event(ctx.key.name, "storage:mount", app.name,
                                    f"{source}:{target}")
    ctx.out(f"Mounting {source} at {target} in {app.name}... done"
            " (from the next release: deploy or ps:restart)")


@command("storage:unmount", MOUNT, app=APP)
def storage_unmount(ctx: Context, p: Parsed) -> None:
    """Stop mounting storage into the app's containers (its files are kept)."""
    app, spec = p.the_app, p.required(MOUNT.metavar)
    source, target = _split(spec)
    # Matched as listed by ``storage`` (a name, or a host path an admin bound), nothing
    # resolved: unmounting takes nothing from the host.
    found = [m for m in ctx.platform.store.mounts(app.name)
             if m.container_path == target and m.host_path.rstrip("/") == source.rstrip("/")]
    if not found:
        raise NotFound(f"{app.name} has no mount {spec}")
    ctx.platform.store.remove_mount(app.name, found[0].host_path, target)
    ctx.platform.store.record_event(ctx.key.name, "storage:unmount", app.name,
                                    f"{source}:{target}")
    ctx.out(f"Unmounting {source} from {target} in {app.name}... done"
            " (from the next release: deploy or ps:restart; the files are kept)")
