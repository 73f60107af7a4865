"""Who may act on which app: the checks every service method starts with.

A service is built for one key (``Access(platform, key)``) and is given app *names*,
never ``App`` rows: each method resolves the name through ``app`` (the key may use it),
``owned`` (its owner or an admin) or ``for_destroy`` (owner or admin, and ``--confirm``
names it), so a method cannot act on an app without the check. A stranger's app and a
missing one give the same answer (``Platform.app_for``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import names
from ..errors import Forbidden, InvalidInput
from ..store import App, Key

if TYPE_CHECKING:
    from ..platform import Platform

Writer = Callable[[str], None]


@dataclass
class Change:
    """One change of an app under its lock; ``detail`` goes into the recorded event."""

    app: App
    recorder: Callable[[str], None]
    detail: str = ""
    record: bool = True

    def record_now(self) -> None:
        """Record the event now (before a roll-out that may fail), not at the end."""
        self.recorder(self.detail)
        self.record = False


class Access:
    """The apps ``key`` may reach, and the lock-and-record preamble of a change."""

    def __init__(self, platform: Platform, key: Key, notify: Writer | None = None) -> None:
        self.platform = platform
        self.key = key
        self.notify = notify  # told when the app's lock is busy ("Waiting for shop: ...")

    def app(self, name: str) -> App:
        """The app ``name`` if the key may act on it; else "not found"."""
        return self.platform.app_for(self.key, name)

    def owned(self, name: str, what: str) -> App:
        """The app ``name`` if the key is its owner or an admin (``what``: "share it")."""
        app = self.app(name)
        require_owner(self.key, app, what)
        return app

    def for_destroy(self, name: str, confirm: str | None, what: str, loses: str) -> App:
        """The app of a destructive change: owner or admin only, ``--confirm APP`` given.
        ``loses`` says what goes, for the refusal ("destroys {app} and its data")."""
        app = self.owned(name, what)
        if confirm != app.name:
            raise InvalidInput(f"this {loses.format(app=app.name)}: add --confirm {app.name}")
        return app

    def reachable(self) -> list[App]:
        """Every app the key may see and act on."""
        store = self.platform.store
        return [a for a in store.list_apps() if store.can_access(self.key, a)]

    def usable(self, name: str) -> App | None:
        """The app ``name`` if it exists and the key may use it; else None (nothing
        learnt: a stranger's app and a missing one look the same)."""
        if not names.APP_RE.fullmatch(name):
            return None
        store = self.platform.store
        app = store.find_app(name)
        return app if app is not None and store.can_access(self.key, app) else None

    def events(self, name: str | None, limit: int) -> list[tuple[Any, ...]]:
        """The audit trail, newest first: ``(time, actor, action, app, detail)`` of the
        app ``name``, else of every app the key reaches (an admin: everything)."""
        store = self.platform.store
        if name is not None:
            return store.events(self.app(name).name, limit)
        if self.key.is_admin:
            return store.events(None, limit)
        return store.events(None, limit, apps=[a.name for a in self.reachable()])

    def record(self, action: str, app: str | None, detail: str = "") -> None:
        """The audit trail: this key did ``action`` to ``app``."""
        self.platform.store.record_event(self.key.name, action, app, detail)

    @contextmanager
    def change(self, name: str, action: str, owner_only: str | None = None
               ) -> Iterator[Change]:
        """The app ``name`` (checked; ``owner_only``: for its owner or an admin, to do
        that) under its lock; ``action`` is recorded when the block ends without an
        error (unless it set ``record`` False)."""
        app = self.owned(name, owner_only) if owner_only else self.app(name)
        with self.platform.lock(app.name, f"{action} by {self.key.name}", self.notify):
            change = Change(app, lambda detail: self.record(action, app.name, detail))
            yield change
            if change.record:
                change.record_now()


class Service:
    """A service acting for one key: ``access`` checks each app a method names, takes its
    lock and records the change (``notify`` is told when the lock is busy)."""

    def __init__(self, platform: Platform, key: Key, notify: Writer | None = None) -> None:
        self.platform = platform
        self.key = key
        self.access = Access(platform, key, notify)


def require_owner(key: Key, app: App, what: str) -> None:
    """Only the app's owner or an admin may do ``what``."""
    if not (key.is_admin or app.owner == key.name):
        raise Forbidden(f"only the owner of {app.name} or an admin may {what}")


class reported_failure:  # noqa: N801 - used as a statement: ``with reported_failure(out):``
    """Print ``failed`` after a started ``Doing x... `` line when the block raises."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self.write = write

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is not None:
            self.write("failed\n")
