"""The storage service: an app's persistent storage, kept across releases.

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
next release (deploy, config change, ps:restart). Changes run under the app's lock and
are recorded.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from pathlib import Path

from .. import names
from ..errors import Conflict, Forbidden, InvalidInput, NotFound
from ..settings import Settings
from ..store import Key
from .access import Service
from .hosts import storage_node

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


def parse_mount(settings: Settings, key: Key, spec: str) -> tuple[str, str, bool]:
    """``SOURCE:CONTAINERDIR`` -> (volume name or host path, container path, is a volume).

    Host paths are for admins: anyone else is refused before the path is even looked at.
    """
    source, target = _split(spec)
    if not source.startswith("/"):
        return names.storage_name(source), target, True
    if not key.is_admin:
        raise Forbidden("only an admin may bind a host directory; name your storage"
                        " instead (uploads:/data): each name is a volume of the app's own")
    roots = [Path(r.strip()) for r in settings.storage_roots.split(",") if r.strip()]
    return str(admin_host_dir(source, [r for r in roots if r.is_absolute()])), target, False


@dataclass(frozen=True)
class Mounted:
    """One mount as ``storage`` lists it: the volume name (None: a host directory)."""

    host_path: str
    container_path: str
    volume: str | None


class Storage(Service):
    """What a key does to its apps' storage (access checked first)."""

    def list(self, name: str) -> tuple[list[Mounted], str | None]:
        """The app's mounts, and the node its storage is pinned to (``runtime: swarm``)."""
        app = self.access.app(name)
        instance = self.platform.settings.instance
        mounts = [Mounted(m.host_path, m.container_path,
                          None if m.host_path.startswith("/")
                          else f"{instance}.{app.name}.{m.host_path}")
                  for m in self.platform.store.mounts(app.name)]
        return mounts, storage_node(self.platform, app.name)

    def mount(self, name: str, spec: str) -> tuple[str, str]:
        """Mount ``SOURCE:CONTAINERDIR`` from the next release: (source, container dir)."""
        store = self.platform.store
        with self.access.change(name, "storage:mount") as change:
            app = change.app
            source, target, volume = parse_mount(self.platform.settings, self.key, spec)
            for m in store.mounts(app.name):
                if _nested(m.container_path, target):
                    raise Conflict(f"{target} overlaps {m.container_path}, mounted already:"
                                   " mount neither inside the other")
                if not volume and m.host_path.startswith("/") and _nested(m.host_path, source):
                    # Nested binds let a container swap the inner directory for a symlink
                    # that Docker would follow at the next start (anywhere on the host).
                    raise Conflict(f"{source} overlaps {m.host_path}, mounted already: mount"
                                   " neither inside the other")
            if not volume and not Path(source).is_dir():
                raise InvalidInput(f"{source} is not a directory")
            store.add_mount(app.name, source, target)
            change.detail = f"{source}:{target}"
        return source, target

    def unmount(self, name: str, spec: str) -> tuple[str, str]:
        """Stop mounting ``SOURCE:CONTAINERDIR`` (its files are kept): (source, dir)."""
        store = self.platform.store
        with self.access.change(name, "storage:unmount") as change:
            app = change.app
            source, target = _split(spec)
            # Matched as listed by ``storage`` (a name, or a host path an admin bound),
            # nothing resolved: unmounting takes nothing from the host.
            found = [m for m in store.mounts(app.name) if m.container_path == target
                     and m.host_path.rstrip("/") == source.rstrip("/")]
            if not found:
                raise NotFound(f"{app.name} has no mount {spec}")
            store.remove_mount(app.name, found[0].host_path, target)
            change.detail = f"{source}:{target}"
        return source, target
