"""The releases service: an app's releases, and the releases made without a push.

Scaling, restarting and rolling back roll out a new release of an existing one (its image
and config, the app's formation) through the deployer: health checks, one route swap,
the old containers retired; so routes are always right and no request fails on the way.
Each runs under the app's lock and is recorded (before the roll-out, which may fail).
"""

from __future__ import annotations

from ..errors import Forbidden, InvalidInput, NotFound
from ..store import App, Release
from .access import Service, Writer, reported_failure


def formation_text(formation: dict[str, int]) -> str:
    """``web=2 worker=1`` (``-``: none)."""
    return " ".join(f"{p}={n}" for p, n in sorted(formation.items())) or "-"


def known_processes(release: Release | None) -> set[str]:
    """The process types of ``release`` (``web`` for one without a Procfile)."""
    if release is None:
        return set()
    return set(release.processes) or {"web"}


def formation_total(current: Release | None, formation: dict[str, int]) -> int:
    """Containers a formation runs (a type without a row: 1 if it is web, else 0)."""
    known = known_processes(current) | set(formation)
    return sum(formation.get(p, 1 if p == "web" else 0) for p in known)


def previous_release(releases: list[Release], current: int) -> Release | None:
    """The newest succeeded release older than ``current`` (``releases`` newest first)."""
    for release in releases:
        if release.version < current and release.status == "succeeded":
            return release
    return None


class Releases(Service):
    """What a key reads of its apps' releases and rolls out without a push."""

    def list(self, name: str, count: int) -> tuple[App, list[Release]]:
        """The app and its ``count`` newest releases, newest first."""
        app = self.access.app(name)
        return app, self.platform.store.list_releases(app.name, count)

    def formation(self, name: str) -> dict[str, int]:
        """How many containers of each process type the app runs (the stored rows)."""
        return self.platform.store.formation(self.access.app(name).name)

    def scale(self, name: str, counts: dict[str, int], write: Writer) -> Release | None:
        """Set the formation and roll out; the new release (None: no release yet, the
        formation is only stored). A failed roll-out puts the old formation back."""
        store = self.platform.store
        with self.access.change(name, "ps:scale") as change:
            app = change.app
            current = store.current_release(app.name)
            unknown = sorted(set(counts) - known_processes(current)) if current else []
            if unknown:
                raise InvalidInput(f"{app.name} has no process type {', '.join(unknown)}"
                                   f" (it has: {', '.join(sorted(known_processes(current)))})")
            text = formation_text(counts)
            previous = store.formation(app.name)
            if not self.key.is_admin:
                self.check_total(app, current, previous, {**previous, **counts})
            store.set_formation(app.name, counts)
            change.detail = text
            change.record_now()
            if current is None:
                return None
            try:
                return self.roll(app, current, current.config, f"Scale {text}",
                                 f"Scaling {app.name} to {text}", write)
            except BaseException:
                store.set_formation(app.name, previous)
                raise

    def check_total(self, app: App, current: Release | None, previous: dict[str, int],
                    formation: dict[str, int]) -> None:
        """Refuse (non-admins) a formation of more than ``max_replicas`` containers,
        unless it runs no more than the one before (scaling down what an admin set)."""
        limit = self.platform.settings.max_replicas
        total = formation_total(current, formation)
        if total > limit and total > formation_total(current, previous):
            raise Forbidden(f"{app.name} would run {total} containers; at most {limit}"
                            " (an admin sets max_replicas, or scales it)")

    def restart(self, name: str, write: Writer) -> Release:
        """Every process restarted: a new release of the current one, without downtime."""
        with self.access.change(name, "ps:restart") as change:
            app = change.app
            current = self.platform.store.current_release(app.name)
            if current is None:
                raise NotFound(f"{app.name} has no release yet: push it first")
            change.record_now()
            return self.roll(app, current, current.config, "Restart",
                             f"Restarting {app.name}", write)

    def rollback(self, name: str, version: int | None, write: Writer) -> Release:
        """A new release of ``version``'s image and config (None: the succeeded one
        before the current one); the config vars become that release's."""
        store = self.platform.store
        with self.access.change(name, "rollback") as change:
            app = change.app
            current = store.current_release(app.name)
            if current is None:
                raise NotFound(f"{app.name} has no release yet")
            if version is None:
                target = previous_release(store.list_releases(app.name, 1000),
                                          current.version)
                if target is None:
                    raise NotFound(f"{app.name} has no release before v{current.version}")
            else:
                target = store.get_release(app.name, version)
            new = self.roll(app, target, target.config, f"Rollback to v{target.version}",
                            f"Rolling back {app.name} to v{target.version}", write)
            old = store.get_config(app.name)
            store.set_config(app.name, target.config,
                             [k for k in old if k not in target.config])
            change.detail = f"to v{target.version}"
        return new

    def roll(self, app: App, source: Release, config: dict[str, str], description: str,
             headline: str, write: Writer) -> Release:
        """A new release of ``source`` with ``config``, after ``headline... `` (``failed``
        follows it when the roll-out fails)."""
        write(f"{headline}... ")
        with reported_failure(write):
            return self.platform.deployer.deploy_release(
                app.name, source, config, description, self.key.name, lambda _: None)
