"""The objects one gitpaas process works with, built once from the settings."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from contextlib import AbstractContextManager
from functools import cached_property
from typing import TYPE_CHECKING

from dulwich.objects import Commit
from dulwich.repo import Repo

from . import names
from .addresses import app_hosts
from .applogs import LogArchive
from .build.docker import BuildLimits, DockerBuilder
from .build.sandbox import BuildSandbox
from .deploy import Deployer
from .errors import Conflict, Forbidden, GitPaasError, NotFound, ServiceError
from .git import repos
from .git.maintenance import Maintainer
from .git.receive import ZERO, Progress
from .locks import app_lock
from .routes import Routes
from .runtime import AppNetworks, DockerRuntime, Sandbox
from .settings import Settings
from .store import App, Key, Store, open_store

if TYPE_CHECKING:
    import docker

    from .datastores.mysql import MySQLDatastores
    from .datastores.postgres import PostgresDatastores
    from .datastores.redis import RedisDatastores
    from .edge.certs import CertManager


class Platform:
    """Settings plus lazily opened store, Docker, Redis and the deployer."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @cached_property
    def store(self) -> Store:
        self.settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        return open_store(self.settings.database, self.settings.secret_key_path)

    @cached_property
    def docker(self) -> docker.DockerClient:
        import docker

        try:
            return docker.from_env(timeout=300)
        except docker.errors.DockerException as exc:
            raise ServiceError(f"Docker is unavailable: {exc}") from exc

    @cached_property
    def log_archive(self) -> LogArchive:
        """The kept log tails of removed containers (see ``applogs``)."""
        return LogArchive(self.settings.data_dir / "logs")

    @cached_property
    def runtime(self) -> DockerRuntime:
        """This host's engine, or (``runtime: swarm``) the swarm's services, with this
        host's engine for builds and one-off containers."""
        settings = self.settings
        networks = AppNetworks(self.docker, settings.instance, settings.app_network_pool,
                               settings.app_network_prefix, claims=lambda: self.store,
                               spares=settings.app_network_spares)
        local = DockerRuntime(self.docker, settings.instance, settings.container_host,
                              on_remove=self.log_archive.keep,
                              sandbox=Sandbox(networks, settings.pids_limit))
        if settings.runtime != "swarm":
            return local
        from .registry import Registry
        from .runtime.swarm import SwarmRuntime, connect

        swarm = SwarmRuntime(connect(settings.swarm_docker_url), local, Registry(settings),
                             settings.instance, stop_timeout=settings.stop_timeout)
        # the same interface, per process type (services=True); see runtime/swarm.py
        return swarm  # type: ignore[return-value]

    @cached_property
    def routes(self) -> Routes:
        return Routes(self.settings.redis_url, self.settings.routes_prefix)

    @cached_property
    def deployer(self) -> Deployer:
        return Deployer(self.settings, self.store, self.builder, self.runtime, self.routes)

    @cached_property
    def builder(self) -> DockerBuilder:
        s = self.settings
        sandbox = BuildSandbox(self.docker, s.instance, s.app_network_pool,
                               s.app_network_prefix)
        return DockerBuilder(self.docker, sandbox, BuildLimits(
            s.build_memory, s.build_cpu_shares, s.build_cpuset, s.build_shm_size,
            s.build_timeout))

    @cached_property
    def certs(self) -> CertManager:
        """The edge's certificates and automatic HTTPS (see ``edge.certs``)."""
        from .edge.certs import CertManager

        return CertManager(self)

    @cached_property
    def mysql(self) -> MySQLDatastores:
        """App databases on the MySQL server of ``mysql_admin_url`` (see ``datastores``)."""
        from .datastores.mysql import MySQLDatastores, Server

        s = self.settings
        return MySQLDatastores(Server(s.mysql_admin_url, s.mysql_app_host, s.mysql_app_port,
                                      s.mysql_user_host), s.instance)

    @cached_property
    def postgres(self) -> PostgresDatastores:
        """App databases on the PostgreSQL server of ``postgres_admin_url``."""
        from .datastores.postgres import PostgresDatastores, Server

        s = self.settings
        return PostgresDatastores(Server(s.postgres_admin_url, s.postgres_app_host,
                                         s.postgres_app_port), s.instance)

    @cached_property
    def redis_stores(self) -> RedisDatastores:
        """Per-app Redis containers (``redis:create``) on the apps' own networks."""
        from . import images
        from .datastores.redis import RedisDatastores

        networks = self.runtime.sandbox.networks
        return RedisDatastores(
            self.docker, self.settings.instance,
            image=lambda: images.require_image(self.docker, self.settings, "redis"),
            network=lambda app: networks.ensure(app) if networks is not None else None,
            maxmemory=self.settings.redis_maxmemory, mem_limit=self.settings.redis_memory)

    def hosts(self, app: str) -> list[str]:
        """Every host name ``app`` answers at (``addresses.app_hosts``)."""
        return app_hosts(self.settings, app, self.store.domains(app))

    def lock(self, app: str, what: str, notify: Callable[[str], None] | None = None,
             ) -> AbstractContextManager[float]:
        """The per-app lock (see ``locks.app_lock``)."""
        return app_lock(self.settings.data_dir / "locks", app, what,
                        self.settings.lock_timeout, notify)

    def lock_now(self, app: str, what: str) -> AbstractContextManager[float]:
        """The per-app lock if it is free now, else ``Conflict`` at once."""
        return app_lock(self.settings.data_dir / "locks", app, what, 0.0)

    def repo_maintainer(self) -> Maintainer:
        """Cleans and repacks app repos (see ``git.maintenance``)."""
        return Maintainer(self.settings.repos_dir, self.lock_now,
                          lambda: [a.name for a in self.store.list_apps()])

    # -- access -------------------------------------------------------------------------

    def app_for(self, key: Key, name: str) -> App:
        """The app ``name`` if ``key`` may act on it; strangers learn nothing more."""
        app = self.store.find_app(names.app_name(name))
        if app is None or not self.store.can_access(key, app):
            raise NotFound(f"no app named {name!r}, or you may not use it")
        return app

    def app_for_push(self, key: Key, name: str) -> App | None:
        """The app to push to, or None when it does not exist yet and ``key`` may create it
        by pushing (``create_app_for_push``, under the app's lock, then makes it)."""
        app = self.store.find_app(names.app_name(name))
        if app is None and key.deploy_app is not None:
            raise NotFound(f"no app named {name!r}, or you may not use it")
        if app is None:
            if not self.settings.create_on_push:
                raise Forbidden(f"no app named {name!r}; create it first with apps:create")
            return None
        if not self.store.can_access(key, app):
            raise NotFound(f"no app named {name!r}, or you may not use it")
        return app

    def create_app_for_push(self, key: Key, name: str) -> App:
        """Create-if-absent for a first push (the caller holds the app's lock): an app that
        another push made meanwhile is used if ``key`` may, as any existing app."""
        app = self.app_for_push(key, name)
        if app is not None:
            return app
        try:
            app = self.store.create_app(name, key.name, self.settings.deploy_branch,
                                        f"{name}.{self.settings.domain}")
        except Conflict:
            app = self.app_for_push(key, name)  # made by a push that held no lock
            if app is None:
                raise
            return app
        self.store.record_event(key.name, "apps:create", name, "created by push")
        # Docker's network create (0.07 s with few apps, 0.13 s with 200 here) starts now,
        # while the client sends its pack; the first deploy's starts wait for it.
        self.deployer.prepare_network(app.name)
        return app

    def repo(self, app: App) -> Repo:
        return repos.ensure_repo(self.settings.repos_dir, app.name, app.deploy_branch
                                 if "*" not in app.deploy_branch else "main",
                                 self.settings.max_push_bytes)

    # -- pushes -------------------------------------------------------------------------

    def is_deploy_branch(self, app: App, branch: str) -> bool:
        """Whether a push of ``branch`` deploys (a first ``master`` counts as ``main``)."""
        if fnmatch.fnmatchcase(branch, app.deploy_branch):
            return True
        return (branch == "master" and app.deploy_branch == "main"
                and app.current_version is None)

    def on_push(self, app_name: str, repo: Repo, key: Key, ref: bytes, old: bytes, new: bytes,
                progress: Progress) -> str | None:
        """Called for each pushed ref before it moves: deploy or say why not."""
        app = self.store.get_app(app_name)
        ref_text = ref.decode("utf-8", "replace")
        if not ref_text.startswith("refs/heads/"):
            return None
        branch = ref_text[len("refs/heads/"):]
        deploys = self.is_deploy_branch(app, branch)
        if new == ZERO:
            return "refusing to delete the deploy branch" if deploys else None
        if not isinstance(repo[new], Commit):
            return f"{branch} must point at a commit"
        if not deploys:
            progress(f"-----> Stored {branch}; not deployed (the deploy branch is"
                     f" {app.deploy_branch})")
            return None
        try:
            self.deployer.deploy_commit(app.name, repo, new, key.name, progress)
            self.store.record_event(key.name, "deploy", app.name, new.decode()[:12])
            self.certs.request(app.name)  # in the background; never fails the deploy
        except GitPaasError as exc:
            from .notify import notify

            self.store.record_event(key.name, "deploy-failed", app.name, exc.message)
            notify(self, "deploy-failed", app.name, exc.message)
            return f"deploy failed: {exc.message}"
        return None
