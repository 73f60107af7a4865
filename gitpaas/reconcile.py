"""Bring Docker and Redis back to the state the store records.

``gitpaas serve`` runs a ``Reconciler`` at start-up and every few seconds. A later pass
skips, without its lock, every app that its one listing of Docker shows steady
(``_steady``). For each other app whose lock it can take without waiting (a deploy, a
config change or a scale in progress is never fought: that app is skipped until the next
pass), it

- starts missing containers of the current release, as the formation says (after a
  Docker daemon restart, a ``docker rm``, a container that exited); a paused container is
  the operator's (``docker pause`` to debug): it is neither replaced nor unrouted;
- removes this instance's orphans: containers of other releases, left-over one-off
  containers, replicas beyond the formation, containers of apps that no longer exist;
- removes the networks of this instance's apps that no longer exist (destroyed outside
  ``apps:destroy``: a crash mid-destroy, a deleted row), once no container uses them;
- rewrites the app's routes when its backends changed (a restarted container gets a new
  host port), and removes frontends of hosts that were this instance's (``Routes.written``)
  and that no app owns any more; a frontend another Hipache tool wrote is left alone.

Backends written for an app only ever come from containers labelled with that app and its
current release, so a host is never routed to another app's container.

At start-up, before anything else, releases still ``pending`` belong to deploys that died
with a previous process: they are marked ``failed``.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import names, procfile
from .applogs import epoch_seconds, normalize_timestamp
from .errors import Conflict, GitPaasError, InvalidInput
from .health import WebCheck, wait_healthy
from .runtime import ContainerInfo
from .store import Release

if TYPE_CHECKING:
    from .platform import Platform

log = logging.getLogger(__name__)
STOPPED = "stopped"  # release status set by ps:stop: the app is meant to run nothing
# Docker restarts these itself (restart policy); "paused" is an operator's state
# (``docker pause`` to debug): left alone, kept in the routes, shown by ``ps``.
LIVE = {"running", "restarting", "paused"}
ROUTED = {"running", "paused"}
SLOW_PASS = 0.5  # seconds: a pass at least this long is logged
ORPHAN_GRACE = 60.0  # seconds an orphan may live (the deploy that made it may be retiring it)


@dataclass
class Report:
    """What one pass did."""

    started: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)  # leftover networks removed
    routed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed_releases: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.started or self.removed or self.routed or self.failed_releases
                    or self.networks)


class Reconciler:
    """Compares the store with Docker and Redis and repairs the difference."""

    def __init__(self, platform: Platform, orphan_grace: float = ORPHAN_GRACE) -> None:
        self.platform = platform
        self.orphan_grace = orphan_grace
        self._orphan_seen: dict[str, float] = {}
        self._first_pass = True

    # -- start-up -----------------------------------------------------------------------

    def mark_interrupted(self, report: Report | None = None) -> Report:
        """Mark ``pending`` releases of idle apps ``failed`` (their deploy died)."""
        report = report or Report()
        store = self.platform.store
        for app in store.list_apps():
            try:
                with self._try_lock(app.name, "start-up recovery"):
                    for release in store.list_releases(app.name, limit=20):
                        if release.status == "pending":
                            store.set_release_status(app.name, release.version, "failed")
                            report.failed_releases.append(f"{app.name} v{release.version}")
                            log.warning("release v%d of %s was interrupted: marked failed",
                                        release.version, app.name)
            except Conflict:
                report.skipped.append(app.name)
        return report

    # -- one pass -----------------------------------------------------------------------

    def run_once(self, grace: float | None = None) -> Report:
        """One reconciliation of every app; ``grace`` overrides the orphan grace."""
        report = Report()
        grace = self.orphan_grace if grace is None else grace
        store = self.platform.store
        versions = {a.name: a.current_version for a in store.list_apps()}
        apps = set(versions)
        containers = self.platform.runtime.list()
        by_app: dict[str, list[ContainerInfo]] = {}
        for info in containers:
            by_app.setdefault(info.app, []).append(info)
        hosts = self.platform.deployer.all_hosts(sorted(apps))
        frontends = self.platform.routes.get_many([h for hs in hosts.values() for h in hs])
        for app in sorted(apps | set(by_app)):
            try:
                if not self._first_pass and app in apps and self._steady(
                        app, versions[app], by_app.get(app, []), hosts[app], frontends):
                    continue
                with self._try_lock(app, "reconcile"):
                    # Listed again under the lock: a deploy that finished since the first
                    # listing has containers the reconciler must not start twice.
                    mine = [c for c in self.platform.runtime.list(app)
                            if not self._user_run_active(c)]
                    if app in apps:
                        self._reconcile_app(app, mine, grace, report)
                    else:
                        self._remove(mine, grace, report)
            except Conflict:
                report.skipped.append(app)
            except GitPaasError as exc:
                report.errors.append(f"{app}: {exc.message}")
                log.warning("reconciling %s: %s", app, exc.message)
        self._remove_unowned_routes(report)
        self._remove_leftover_networks(report)
        if getattr(self.platform.runtime, "services", False) is True:
            # secrets of services whose creation failed half-way
            self.platform.runtime.remove_unused_secrets()  # type: ignore[attr-defined]
        live = {c.id for c in containers}
        self._orphan_seen = {k: v for k, v in self._orphan_seen.items()
                             if k in live or k.startswith("service:")}
        if report.changed:
            log.info("reconciled: started %s, removed %s, routed %s, networks removed %s",
                     report.started, report.removed, report.routed, report.networks)
        return report

    def _steady(self, app: str, version: int | None, containers: list[ContainerInfo],
                hosts: list[str], frontends: dict[str, list[str]]) -> bool:
        """Whether the pass's first listing shows ``app`` exactly as the store wants it:
        the formation's containers of the current release, all live, no other container
        (one-offs included), and every host routed to its web containers. Then the app
        needs nothing, and neither its lock nor a listing of its own: a pass over a
        steady host costs one Docker listing, not one per app (with 200 apps those took
        1.5-2.8 s of every 5 s, beside the deploys). This only ever decides to do
        nothing; anything else takes the lock and lists again, as before."""
        if any(c.oneoff for c in containers):
            return False
        current = self.platform.store.get_release(app, version) if version else None
        backends: list[str] = []
        if current is None or current.status == STOPPED:
            if containers:
                return False
        else:
            desired = procfile.desired(current.processes, self.platform.store.formation(app))
            slots = {(c.process, c.replica) for c in containers}
            if len(slots) != len(containers) or slots != set(desired) or any(
                    c.release != current.version or c.status not in LIVE for c in containers):
                return False
            backends = sorted(c.backend for c in containers
                              if c.process == "web" and c.port and c.status in ROUTED)
        for host in hosts:
            have = frontends.get(host) or []
            if (have[:1] != [app] or sorted(have[1:]) != backends) if backends else have:
                return False
        return True

    def _user_run_active(self, info: ContainerInfo) -> bool:
        """A ``run`` command or cron job still within its time: whoever started it removes
        it, not us. One just created and not started yet counts too: a pass that lands
        between ``run``'s create and start must not take it for an orphan of the current
        release (removed at once) and stop it as it starts."""
        if info.oneoff not in {"run", "cron"} or info.status not in {"running", "created"}:
            return False
        stamp = normalize_timestamp(info.started_at) if info.started_at else None
        if stamp is None:
            return True
        limit = self.platform.settings.run_timeout + 60
        return time.time() - epoch_seconds(stamp) < limit

    def _try_lock(self, app: str, what: str) -> AbstractContextManager[float]:
        try:
            names.app_name(app)
        except InvalidInput:
            raise Conflict(f"not an app name: {app!r}") from None
        return self.platform.lock_now(app, what)

    def _reconcile_app(self, app: str, containers: list[ContainerInfo], grace: float,
                       report: Report) -> None:
        store = self.platform.store
        current = store.current_release(app)
        if getattr(self.platform.runtime, "services", False) is True:
            self._reconcile_services(app, current, containers, grace, report)
            return
        if current is None or current.status == STOPPED:
            self._remove(containers, grace, report)
            self._route(app, [], report)
            return
        desired = procfile.desired(current.processes, self.platform.store.formation(app))
        keep: dict[tuple[str, int], ContainerInfo] = {}
        orphans = []
        for info in containers:
            slot = (info.process, info.replica)
            if (info.release == current.version and slot in desired and slot not in keep
                    and info.status in LIVE):
                keep[slot] = info
            else:
                orphans.append(info)
        current_orphans = [c for c in orphans if c.release == current.version]
        self._remove(current_orphans, 0.0, report)  # broken or surplus replicas: at once
        for slot, command in desired.items():
            if slot not in keep:
                started = self._start(app, current, slot, command, report)
                if started is not None:
                    keep[slot] = started
        web = [keep[s] for s in sorted(keep)
               if s[0] == "web" and keep[s].port and keep[s].status in ROUTED]
        rerouted = self._route(app, [c.backend for c in web], report)
        if rerouted or self._first_pass:
            self._publish_edge_settings(app)
        if rerouted and orphans:  # let requests under way on the old backends finish
            time.sleep(self.platform.settings.drain_seconds)
        self._remove([c for c in orphans if c.release != current.version], grace, report)

    def _reconcile_services(self, app: str, current: Release | None,
                            tasks: list[ContainerInfo], grace: float, report: Report) -> None:
        """``runtime: swarm``: Swarm restarts and reschedules replicas itself. Here: a
        missing service of the current release is started again, services of other
        releases (or process types scaled to 0) are removed, and the routes follow the
        running web replicas (a node that left takes its replicas off the routes)."""
        from .runtime.swarm import service_name

        runtime = self.platform.runtime
        instance = self.platform.settings.instance
        have = runtime.desired_services(app)  # type: ignore[attr-defined]
        wanted: dict[str, tuple[str, int, str]] = {}
        if current is not None and current.status != STOPPED:
            for (process, _), command in procfile.desired(
                    current.processes, self.platform.store.formation(app)).items():
                name = service_name(instance, app, current.version, process)
                count = wanted.get(name, (process, 0, command))[1] + 1
                wanted[name] = (process, count, command)
        web = []
        for name, (process, count, command) in sorted(wanted.items()):
            if name not in have:
                assert current is not None
                started = self.platform.deployer.start_process(app, current, process, count,
                                                               command)
                report.started.append(name)
                if process == "web" and not self._healthy(started, report):
                    runtime.remove(started, stop_timeout=2)
                    continue
                tasks = tasks + started
        if current is not None and current.status != STOPPED:
            web = [t for t in tasks if t.release == current.version and t.process == "web"
                   and t.port and t.status in ROUTED]
        rerouted = self._route(app, sorted(t.backend for t in web), report)
        if rerouted or self._first_pass:
            self._publish_edge_settings(app)
        now = time.monotonic()
        prefix = f"service:{instance}_{app}_"
        for key in [k for k in self._orphan_seen
                    if k.startswith(prefix) and k[len("service:"):] not in have]:
            del self._orphan_seen[key]  # gone by other hands
        for name, (release, _) in sorted(have.items()):
            if name in wanted:
                continue
            key = f"service:{name}"
            first = self._orphan_seen.setdefault(key, now)
            due = current is None or release == current.version or now - first >= grace
            if due:
                runtime.remove_service(name)  # type: ignore[attr-defined]
                report.removed.append(name)
                self._orphan_seen.pop(key, None)

    def _healthy(self, started: list[ContainerInfo], report: Report) -> bool:
        """Whether every replica passes the default web check (before it is routed)."""
        check = WebCheck(deadline=self.platform.settings.health_timeout)
        runtime = self.platform.runtime
        for info in started:
            try:
                wait_healthy(info, check, lambda i: runtime.get(i.id),
                             lambda i: runtime.logs(i.id, 20))
            except GitPaasError as exc:
                report.errors.append(f"{info.name}: {exc.message}")
                return False
        return True

    def _start(self, app: str, release: Release, slot: tuple[str, int], command: str,
               report: Report) -> ContainerInfo | None:
        process, replica = slot
        deployer = self.platform.deployer
        info = deployer.start_container(app, release, process, replica, command)
        report.started.append(info.name)
        if process != "web":
            return info
        check = WebCheck(deadline=self.platform.settings.health_timeout)
        try:
            wait_healthy(info, check, lambda i: self.platform.runtime.get(i.id),
                         lambda i: self.platform.runtime.logs(i.id, 20))
        except GitPaasError as exc:
            report.errors.append(f"{info.name}: {exc.message}")
            self.platform.runtime.remove([info], stop_timeout=2)
            return None
        return info

    def _remove(self, containers: list[ContainerInfo], grace: float, report: Report) -> None:
        now = time.monotonic()
        due = []
        for info in containers:
            first = self._orphan_seen.setdefault(info.id, now)
            if now - first >= grace:
                due.append(info)
        if due:
            self.platform.runtime.remove(due, stop_timeout=self.platform.settings.stop_timeout)
            report.removed.extend(c.name for c in due)
            for info in due:
                self._orphan_seen.pop(info.id, None)

    def _route(self, app: str, backends: list[str], report: Report) -> bool:
        """Point the app's hosts at ``backends`` where they differ; True if any did."""
        routes = self.platform.routes
        changed = False
        for host, have in routes.get_many(self.platform.hosts(app)).items():
            if backends:
                if have[:1] == [app] and sorted(have[1:]) == sorted(backends):
                    continue
                routes.swap(app, [host], backends)
            elif have:
                routes.remove([host])
            else:
                continue
            report.routed.append(host)
            changed = True
        return changed

    def _publish_edge_settings(self, app: str) -> None:
        """The app's edge settings into Redis (an empty Redis after a restart lacks them)."""
        stored = self.platform.store.edge_settings(app)
        if stored or not self._first_pass:
            from .edge.appsettings import publish

            publish(self.platform, app)

    def _owners(self) -> dict[str, str]:
        apps = [a.name for a in self.platform.store.list_apps()]
        return {h: app for app, hosts in self.platform.deployer.all_hosts(apps).items()
                for h in hosts}

    def _remove_unowned_routes(self, report: Report) -> None:
        """Frontends this instance wrote for hosts no app owns any more (a removed domain,
        a destroyed app). Frontends other Hipache tools wrote are not this instance's.

        Owners are read after the routes, so a domain or app added meanwhile keeps its
        route."""
        routes = self.platform.routes
        written = routes.written()
        if not written:
            return
        frontends = routes.get_many(sorted(written))
        owners = self._owners()
        for host, frontend in frontends.items():
            if host not in owners:
                routes.remove([host])
                if frontend:
                    report.routed.append(host)

    def _remove_leftover_networks(self, report: Report) -> None:
        """Networks of apps the store no longer has, with no container attached. The apps
        are read after the networks (an app created meanwhile keeps its network) and
        again under the app's lock (a first push creates the app under it)."""
        networks = getattr(self.platform.runtime.sandbox, "networks", None)
        if networks is None:
            return
        try:
            candidates = networks.apps_with_networks()
            store = self.platform.store
            gone = candidates - {a.name for a in store.list_apps()}
            for app in sorted(gone):
                try:
                    with self._try_lock(app, "reconcile"):
                        if store.find_app(app) is None and networks.remove_if_unused(app):
                            report.networks.append(networks.name(app))
                except Conflict:
                    report.skipped.append(app)
            report.networks.extend(networks.remove_leftover_claims())
        except GitPaasError as exc:
            report.errors.append(f"networks: {exc.message}")
            log.warning("removing leftover networks: %s", exc.message)

    # -- the loop -----------------------------------------------------------------------

    def start_up(self) -> Report:
        """At start-up: mark interrupted deploys failed, then reconcile without grace."""
        report = self.mark_interrupted()
        try:
            again = self.run_once(grace=0.0)
        finally:
            self._first_pass = False
        again.failed_releases = report.failed_releases
        return again

    def loop(self, stop: threading.Event, interval: float) -> None:
        """Reconcile every ``interval`` seconds until ``stop`` is set."""
        while not stop.wait(interval):
            try:
                t0 = time.monotonic()
                self.run_once()
                took = time.monotonic() - t0
                # A pass is one Docker listing plus the apps that need work: a slow one
                # says the host is struggling (or that it regressed: bench/run scale).
                log.log(logging.INFO if took >= SLOW_PASS else logging.DEBUG,
                        "reconcile pass took %.3f s", took)
            except GitPaasError as exc:
                log.warning("reconcile pass failed: %s", exc.message)
            except Exception:  # noqa: BLE001 - the loop must outlive one bad pass
                log.exception("reconcile pass failed")


def start_in_thread(platform: Platform, interval: float) -> tuple[Reconciler, threading.Event]:
    """Run the start-up pass now, then the loop on a daemon thread."""
    reconciler = Reconciler(platform)
    try:
        reconciler.start_up()
    except GitPaasError as exc:
        log.warning("start-up reconcile failed: %s", exc.message)
    stop = threading.Event()
    if interval > 0:
        threading.Thread(target=reconciler.loop, args=(stop, interval), daemon=True,
                         name="reconcile").start()
    return reconciler, stop
