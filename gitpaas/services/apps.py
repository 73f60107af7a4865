"""The apps service: create, info, destroy, stop/start, domains and sharing of an app.

Beside the deployer (which makes releases live): everything else a command does to an
app. Each method takes the app's name and checks the key's access first (``Access``);
changes run under the app's lock and are recorded in the audit trail.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import names
from ..addresses import app_url, default_host, git_remote
from ..cron import CronJob, release_jobs
from ..errors import Conflict, GitPaasError, InvalidInput, NotFound
from ..git import repos
from ..hooks import run_platform_hooks
from ..runtime import ContainerInfo
from ..store import App, Release
from ..terminal import Terminal
from .access import Service, Writer, reported_failure
from .domains import check_free


@dataclass(frozen=True)
class Sharing:
    """Who may use an app: its owner, the keys it is shared with, its deploy keys."""

    owner: str
    shared_with: list[str]
    deploy_keys: list[str]


class Apps(Service):
    """What a key does to its apps (beside deploys)."""

    # -- the apps -----------------------------------------------------------------------

    def reachable(self) -> list[App]:
        """The apps the key may see."""
        return self.access.reachable()

    def create(self, name: str) -> App:
        """A new app owned by the key (a push creates one too)."""
        name = names.app_name(name)
        settings = self.platform.settings
        app = self.platform.store.create_app(name, self.key.name, settings.deploy_branch,
                                             default_host(settings, name))
        self.access.record("apps:create", name)
        return app

    def info(self, name: str) -> dict[str, Any]:
        """The app's owner, release, branch, hosts, formation and addresses."""
        app = self.access.app(name)
        platform = self.platform
        return {
            "name": app.name, "owner": app.owner, "release": app.current_version,
            "deploy_branch": app.deploy_branch, "created_at": app.created_at,
            "hosts": platform.hosts(app.name),
            "formation": platform.store.formation(app.name),
            "url": app_url(platform.settings, app.name),
            "git_url": git_remote(platform.settings, app.name),
        }

    def destroy(self, name: str, confirm: str | None, progress: Writer) -> None:
        """Remove the app and everything of it (owner or admin; ``confirm`` names it):
        routes, certificates, containers, network, images, datastores and storage, repo,
        kept logs, the store's rows; then the ``post-destroy`` hooks."""
        app = self.access.for_destroy(name, confirm, "destroy it",
                                      "destroys {app} and its data")
        platform = self.platform
        with platform.lock(app.name, f"apps:destroy by {self.key.name}"):
            progress(f"-----> Destroying {app.name}")
            hosts = platform.hosts(app.name)
            platform.routes.remove(hosts)
            platform.certs.forget(hosts)
            platform.runtime.remove(platform.runtime.list(app.name), stop_timeout=5)
            platform.runtime.remove_network(app.name)
            platform.deployer.remove_images(app.name)
            from ..datastores import destroy_for_app

            destroy_for_app(platform, app.name)
            repos.remove_repo(platform.settings.repos_dir, app.name)
            platform.log_archive.remove(app.name)
            # Recorded first: the event belongs to this app, not to a later one of its name.
            self.access.record("apps:destroy", app.name)
            platform.store.delete_app(app.name)
            try:
                run_platform_hooks(platform.settings, "post-destroy",
                                   {"app": app.name, "actor": self.key.name}, progress)
            except GitPaasError as exc:  # reported, never fatal: the app is gone
                progress(f" !     {exc.message}")

    # -- processes ----------------------------------------------------------------------

    def processes(self, name: str) -> list[tuple[ContainerInfo, str]]:
        """The app's containers, each with Docker's ``StartedAt`` of it (the listing's
        summaries do not hold it: asked of running and paused ones only)."""
        self.access.app(name)
        runtime = self.platform.runtime
        found = []
        for c in runtime.list(name):
            info = runtime.get(c.id) if c.status in {"running", "paused"} else None
            found.append((c, info.started_at if info else ""))
        return found

    def stop(self, name: str, write: Writer) -> None:
        """Remove the app's routes and containers; its release is marked ``stopped`` so
        the reconciler leaves it stopped."""
        platform = self.platform
        with self.access.change(name, "ps:stop") as change:
            app = change.app
            write(f"Stopping {app.name}... ")
            platform.routes.remove(platform.hosts(app.name))
            current = platform.store.current_release(app.name)
            if current is not None:
                platform.store.set_release_status(app.name, current.version, "stopped")
            platform.runtime.remove(platform.runtime.list(app.name),
                                    stop_timeout=platform.settings.stop_timeout)

    def start(self, name: str, write: Writer) -> Release | None:
        """Start the current release again (after ``stop``); None when it runs already."""
        platform = self.platform
        with self.access.change(name, "ps:start") as change:
            app = change.app
            current = platform.store.current_release(app.name)
            if current is None:
                raise NotFound(f"{app.name} has no release yet: push it first")
            if any(c.status == "running" for c in platform.runtime.list(app.name)):
                change.record = False
                return None
            write(f"Starting {app.name}... ")
            with reported_failure(write):
                platform.deployer.start_release(app.name, current, lambda _: None)
            return current

    def run(self, name: str, argv: list[str], term: Terminal, process: str) -> int:
        """``argv`` in a one-off container of the current release (audited: the command,
        never config values); its exit status."""
        app = self.access.app(name)
        self.access.record("run", app.name, audit_text(argv))
        return self.platform.deployer.run_command(app.name, argv, term, process)

    def enter(self, name: str, target: str | None, argv: list[str],
              terminal: Callable[[], Terminal]) -> int:
        """``argv`` inside a running container of the current release: ``target``
        (``web.1``), else the first web one; its exit status."""
        app = self.access.app(name)
        running = [c for c in self.platform.runtime.list(app.name)
                   if c.status == "running" and c.release == app.current_version
                   and not c.oneoff]
        if target is not None:
            chosen = [c for c in running if f"{c.process}.{c.replica}" == target]
        else:
            chosen = sorted(running, key=lambda c: (c.process != "web", c.process, c.replica))
        if not chosen:
            raise NotFound(f"{app.name} has no running {target or 'container'}: see ps")
        info = chosen[0]
        self.access.record("enter", app.name,
                           f"{info.process}.{info.replica}: {audit_text(argv)}")
        return self.platform.runtime.exec_attached(info.id, argv, terminal())

    def routes(self, name: str | None) -> dict[str, list[str]]:
        """The frontends in Redis of the app ``name``; without one, of every app the key
        reaches (an admin: every frontend, others' too)."""
        platform = self.platform
        if name is not None:
            app = self.access.app(name)
            return platform.routes.get_many(platform.hosts(app.name))
        if self.key.is_admin:
            return platform.routes.all()
        return platform.routes.get_many([h for a in self.access.reachable()
                                         for h in platform.hosts(a.name)])

    def cron(self, name: str) -> list[tuple[CronJob, dict[str, Any]]]:
        """The current release's cron jobs (app.json ``cron``), each with its last run
        (``{last_slot, last_started, last_status, last_duration}``, or empty)."""
        app = self.access.app(name)
        store = self.platform.store
        release = store.current_release(app.name)
        states = store.cron_states(app.name)
        return [(job, states.get(job.id, {}))
                for job in (release_jobs(release.extra) if release else [])]

    # -- domains ------------------------------------------------------------------------

    def domains(self, name: str) -> tuple[str, list[str]]:
        """The app's default host and its extra domains."""
        app = self.access.app(name)
        return default_host(self.platform.settings, app.name), \
            self.platform.store.domains(app.name)

    def add_domain(self, name: str, host: str) -> None:
        """Make the app answer at ``host`` too (if the policy allows: ``domains.py``);
        its route is written at once, a certificate asked for in the background."""
        host = names.hostname(host)
        platform = self.platform
        with self.access.change(name, "domains:add") as change:
            app = change.app
            check_free(platform, self.key, app, host)
            platform.store.add_domain(app.name, host)
            frontend = platform.routes.get(default_host(platform.settings, app.name))
            if len(frontend) > 1:
                platform.routes.swap(app.name, [host], frontend[1:])
            change.detail = host
        platform.certs.request(app.name)  # in the background, if ACME is on

    def remove_domain(self, name: str, host: str) -> None:
        """Stop answering at ``host``: its route and certificate go at once."""
        host = names.hostname(host)
        platform = self.platform
        with self.access.change(name, "domains:remove") as change:
            platform.store.remove_domain(change.app.name, host)
            platform.routes.remove([host])
            platform.certs.forget([host])
            change.detail = host

    # -- sharing ------------------------------------------------------------------------

    def sharing(self, name: str) -> Sharing:
        """Who may use the app (owner or admin only)."""
        app = self.access.owned(name, "see who shares it")
        store = self.platform.store
        return Sharing(app.owner, store.shares(app.name), store.deploy_keys(app.name))

    def share(self, name: str, key_name: str) -> None:
        """Let the key ``key_name`` use the app (owner or admin only)."""
        key_name = names.key_name(key_name)
        app = self.access.owned(name, "share it")
        store = self.platform.store
        if store.get_key(key_name).deploy_app is not None:  # NotFound without such a key
            raise InvalidInput(f"{key_name} is a deploy key: it reaches only its own app")
        if key_name == app.owner:
            raise Conflict(f"{key_name} owns {app.name} already")
        store.add_share(app.name, key_name)
        self.access.record("sharing:add", app.name, key_name)

    def unshare(self, name: str, key_name: str) -> None:
        """Stop sharing the app with ``key_name`` (owner or admin only)."""
        key_name = names.key_name(key_name)
        app = self.access.owned(name, "change who shares it")
        if not self.platform.store.remove_share(app.name, key_name):
            raise NotFound(f"{app.name} is not shared with {key_name}")
        self.access.record("sharing:remove", app.name, key_name)


def audit_text(argv: list[str], limit: int = 200) -> str:
    """The command as the audit trail keeps it (never config values: only what was typed)."""
    text = shlex.join(argv)
    return text if len(text) <= limit else text[: limit - 3] + "..."
