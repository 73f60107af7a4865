"""The release pipeline: build, record, start, check, swap routes, retire.

Any failure before the swap removes what it started and leaves the old release serving.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from dulwich.repo import Repo

from . import procfile
from .build.context import build_context, read_blob, tree_paths
from .build.docker import DockerBuilder
from .errors import DeployError, GitPaasError
from .health import WebCheck, wait_healthy
from .routes import Routes
from .runtime import ContainerInfo, DockerRuntime
from .settings import Settings
from .store import Release, Store

log = logging.getLogger(__name__)
ProgressFn = Callable[[str], None]


@dataclass
class Timings:
    """Seconds spent in each stage of one deploy (for the benchmarks)."""

    stages: dict[str, float] = field(default_factory=dict)

    def mark(self, stage: str, since: float) -> float:
        now = time.monotonic()
        self.stages[stage] = self.stages.get(stage, 0.0) + now - since
        return now


def image_name(settings: Settings, app: str, version: int) -> str:
    return f"{settings.instance}/{app}:v{version}"


class Deployer:
    """Turns a commit, or an image plus new config, into the app's live release."""

    def __init__(self, settings: Settings, store: Store, builder: DockerBuilder,
                 runtime: DockerRuntime, routes: Routes) -> None:
        self.settings = settings
        self.store = store
        self.builder = builder
        self.runtime = runtime
        self.routes = routes
        self.last_timings = Timings()
        self.retiring: list[threading.Thread] = []

    def hosts(self, app: str) -> list[str]:
        """Every host name the app answers at."""
        return [f"{app}.{self.settings.domain}", *self.store.domains(app)]

    def url(self, app: str) -> str:
        """The app's address as a browser would use it."""
        port = self.settings.listen("http")[1]
        return f"http://{app}.{self.settings.domain}{'' if port == 80 else f':{port}'}/"

    # -- from a push --------------------------------------------------------------------

    def deploy_commit(self, app: str, repo: Repo, commit: bytes, actor: str,
                      progress: ProgressFn) -> Release:
        """Build ``commit`` and roll it out as the app's next release."""
        timings = self.last_timings = Timings()
        start = time.monotonic()
        version = self.store.next_version(app)
        short = commit.decode()[:7]
        progress(f"-----> Building {app} (v{version}) from {short}")
        files, dockerfile, buildargs = self._context_files(app, repo, commit, progress)
        tag = image_name(self.settings, app, version)
        context = build_context(repo.object_store, commit, files,
                                self.settings.max_context_bytes, self.settings.max_context_files)
        with context:
            self.builder.build(context, tag, {}, progress, buildargs, dockerfile)
        start = timings.mark("build", start)
        processes = self._processes(repo, commit)
        release = self.store.add_release(
            app, tag, commit.decode(), self.store.get_config(app), processes,
            f"Deploy {short}", actor)
        try:
            self._roll_out(app, release, progress, timings)
        except BaseException:
            self.builder.remove(tag)
            raise
        timings.mark("total", time.monotonic() - sum(timings.stages.values()))
        return release

    def _context_files(self, app: str, repo: Repo, commit: bytes,
                       progress: ProgressFn) -> tuple[dict[str, bytes], str, dict[str, str]]:
        """Files to add to the context, the Dockerfile's name and the build args."""
        paths = tree_paths(repo.object_store, commit)
        forced = self.store.get_app(app).buildpack
        if "Dockerfile" in paths and not forced:
            progress("-----> Using the repo's Dockerfile")
            return {}, "Dockerfile", {}
        from .build import buildpacks  # the buildpack module is only needed here

        found = buildpacks.detect(paths, forced)
        progress(f"-----> Buildpack: {found.name} ({found.reason})")
        name = ".gitpaas.Dockerfile"
        dockerfile = buildpacks.dockerfile(found.name, buildpacks.BUILDPACKS_DIR)
        return {name: dockerfile}, name, buildpacks.build_args(found.name, self.settings)

    @staticmethod
    def _processes(repo: Repo, commit: bytes) -> dict[str, str]:
        text = read_blob(repo.object_store, commit, "Procfile")
        return procfile.parse(text.decode("utf-8", "replace")) if text else {}

    # -- from a config change or a rollback ---------------------------------------------

    def deploy_release(self, app: str, source: Release, config: dict[str, str],
                       description: str, actor: str, progress: ProgressFn) -> Release:
        """A new release with ``source``'s image and ``config``, rolled out like a push."""
        release = self.store.add_release(app, source.image, source.commit, config,
                                         source.processes, description, actor)
        self._roll_out(app, release, progress, Timings())
        return release

    def start_release(self, app: str, release: Release, progress: ProgressFn) -> None:
        """Start ``release`` again as the formation says (after ``ps:stop``)."""
        try:
            self._roll_out(app, release, progress, Timings())
        except BaseException:
            self.store.set_release_status(app, release.version, release.status)
            raise

    # -- the roll-out -------------------------------------------------------------------

    def _env(self, release: Release, process: str, replica: int) -> dict[str, str]:
        env = dict(release.config)
        env.update({"PORT": "5000", "GITPAAS_APP": release.app,
                    "GITPAAS_RELEASE": f"v{release.version}", "DYNO": f"{process}.{replica}"})
        return env

    def _roll_out(self, app: str, release: Release, progress: ProgressFn,
                  timings: Timings) -> None:
        started: list[ContainerInfo] = []
        now = time.monotonic()
        try:
            formation = self.store.formation(app)
            processes = dict(release.processes) or {"web": ""}
            if "web" not in processes and not release.processes:
                processes["web"] = ""
            progress(f"-----> Releasing v{release.version}")
            for process, command in sorted(processes.items()):
                count = formation.get(process, 1 if process == "web" else 0)
                for replica in range(1, count + 1):
                    started.append(self.runtime.start(
                        app, release.version, release.image, process, replica,
                        self._env(release, process, replica), command or None,
                        web=process == "web"))
            now = timings.mark("start", now)
            web = [c for c in started if c.process == "web"]
            check = WebCheck(timeout=self.settings.health_timeout)
            for info in web:
                progress(f"-----> Checking {info.process}.{info.replica}")
                wait_healthy(info, check, lambda i: self.runtime.get(i.id),
                             lambda i: self.runtime.logs(i.id, 20))
            for info in (c for c in started if c.process != "web"):
                current = self.runtime.wait_running(info, 1.0)
                if current.status in {"exited", "dead"}:
                    raise DeployError(f"{info.process}.{info.replica} exited at start")
            now = timings.mark("check", now)
            # No web process (scaled to 0, worker-only): the frontends go away.
            self.routes.swap(app, self.hosts(app), [c.backend for c in web])
            self.store.activate_release(app, release.version)
            now = timings.mark("swap", now)
        except BaseException as exc:
            self.runtime.remove(started, stop_timeout=2)
            self.store.set_release_status(app, release.version, "failed")
            if isinstance(exc, GitPaasError):
                progress(f" !     {exc.message}")
            raise
        progress(f"-----> {app} v{release.version} is live at {self.url(app)}")
        old = [c for c in self.runtime.list(app) if c.release < release.version]
        if old:
            thread = threading.Thread(target=self._retire, args=(old,), daemon=True,
                                      name=f"retire-{app}")
            self.retiring.append(thread)
            thread.start()

    def _retire(self, old: list[ContainerInfo]) -> None:
        """Drain (routes already point elsewhere), SIGTERM, wait, SIGKILL, remove."""
        try:
            time.sleep(self.settings.drain_seconds)
            log.info("retiring %s", ", ".join(c.name for c in old))
            self.runtime.remove(old, stop_timeout=self.settings.stop_timeout)
        except Exception:  # noqa: BLE001 - the reconciler removes what is left
            log.exception("retiring %s failed", [c.name for c in old])
        finally:
            self.retiring[:] = [t for t in self.retiring if t.is_alive()]

    def wait_retired(self, timeout: float = 60) -> None:
        """Wait for retirements under way (for tests and shutdown)."""
        for thread in list(self.retiring):
            thread.join(timeout)
