"""The release pipeline: build, record, release phase, start, check, swap routes, retire.

Any failure before the swap removes what it started and leaves the old release serving.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dulwich.repo import Repo

from . import faults, procfile
from .addresses import app_hosts, app_url
from .appjson import AppSpec, parse_app_json, parse_checks
from .build import buildpacks, policy
from .build.context import build_context, read_blob, tree_paths
from .build.docker import DockerBuilder
from .errors import DeployError, GitPaasError, UserError
from .health import WebCheck, wait_healthy, wait_stable
from .hooks import run_platform_hooks
from .routes import Routes
from .runtime import ContainerInfo, DockerRuntime, StorageMount
from .settings import Settings
from .store import Release, Store
from .terminal import Terminal

log = logging.getLogger(__name__)
ProgressFn = Callable[[str], None]
RELEASE_PHASE = procfile.RELEASE_PHASE
MAX_PARALLEL_STARTS = 4
MAX_PARALLEL_STOPS = 16


class _Aborted(Exception):
    """A check given up because another container of its deploy failed."""


@dataclass
class Timings:
    """Seconds spent in each stage of one deploy (for the benchmarks)."""

    stages: dict[str, float] = field(default_factory=dict)

    def mark(self, stage: str, since: float) -> float:
        now = time.monotonic()
        self.stages[stage] = self.stages.get(stage, 0.0) + now - since
        return now

    def text(self) -> str:
        """``prepare=0.012 build=0.410 ...`` (the log line the benchmarks read)."""
        return " ".join(f"{k}={v:.3f}" for k, v in self.stages.items())


def image_name(settings: Settings, app: str, version: int) -> str:
    return f"{settings.instance}/{app}:v{version}"


def legacy_storage_name(relative: str) -> str:
    """The volume name of a legacy storage directory ``<data_dir>/storage/<app>/<relative>``:
    ``uploads`` stays ``uploads``; any other character than A-Z a-z 0-9 _ - becomes ``.``
    (``media/2024`` -> ``media.2024``), which a tenant's own names never hold."""
    return "".join(c if c.isascii() and (c.isalnum() or c in "_-") else "." for c in relative)


def _inside(path: Path, root: Path) -> str | None:
    """``path`` relative to ``root`` (compared as written), or None if not below it."""
    try:
        relative = path.relative_to(root)
    except ValueError:
        return None
    return str(relative) if relative.parts else None


def spec_extra(spec: AppSpec) -> dict[str, Any]:
    """What a release keeps of the app's spec (reused by config changes and rollbacks)."""
    return {"healthchecks": {p: [dataclasses.asdict(c) for c in checks]
                             for p, checks in spec.healthchecks.items()},
            "postdeploy": spec.postdeploy,
            "cron": [{"command": j.command, "schedule": j.schedule} for j in spec.cron]}


class Deployer:
    """Turns a commit, or an image plus new config, into the app's live release."""

    def __init__(self, settings: Settings, store: Store, builder: DockerBuilder,
                 runtime: DockerRuntime, routes: Routes) -> None:
        self.settings = settings
        self.store = store
        self.builder = builder
        self.runtime = runtime
        self.routes = routes
        # One retirer thread per app, and the newest live version it must retire below.
        self._retire_lock = threading.Lock()
        self._retire_below: dict[str, int] = {}
        self._retirers: dict[str, threading.Thread] = {}
        # A first deploy's wait for the app's network, per app (the app's lock is held),
        # which its starts call between the create and the start.
        self._network_ready: dict[str, Callable[[], None]] = {}
        self._timing_lock = threading.Lock()

    def all_hosts(self, apps: Iterable[str]) -> dict[str, list[str]]:
        """Every host name each of ``apps`` answers at, with one query for all domains."""
        domains = self.store.all_domains()
        return {app: [f"{app}.{self.settings.domain}", *domains.get(app, [])] for app in apps}

    def _hooks(self, event: str, release: Release | dict[str, Any],
               progress: ProgressFn) -> None:
        if isinstance(release, Release):
            payload = {"app": release.app, "release": release.version, "image": release.image,
                       "commit": release.commit, "description": release.description,
                       "actor": release.created_by, "url": app_url(self.settings, release.app)}
        else:
            payload = release
        run_platform_hooks(self.settings, event, payload, progress)

    # -- from a push --------------------------------------------------------------------

    def deploy_commit(self, app: str, repo: Repo, commit: bytes, actor: str,
                      progress: ProgressFn) -> Release:
        """Build ``commit`` and roll it out as the app's next release.

        The release is recorded (``pending``) first: the store allocates its version once.
        Everything up to go-live is undone on failure (the image removed, the release
        ``failed``); nothing after go-live can touch the live image."""
        timings = Timings()
        start = time.monotonic()
        short = commit.decode()[:7]
        spec = self._app_spec(repo, commit)
        release = self.store.add_release(
            app, functools.partial(image_name, self.settings, app), commit.decode(),
            self.store.get_config(app), self._processes(repo, commit), f"Deploy {short}",
            actor, extra=spec_extra(spec))
        network = self.prepare_network(app)
        try:
            self._build(app, release, repo, commit, spec, progress, timings, start)
            if network is not None:
                # The containers are created while the network may still be made; their
                # starts wait for it (netwait: Docker's network create left over then).
                timings.stages["netwait"] = 0.0
                self._network_ready[app] = functools.partial(
                    self._wait_network, network, timings)
            try:
                self._go_live(app, release, progress, timings)
            finally:
                self._network_ready.pop(app, None)
                self._refill_networks()  # after the starts, not beside them or the build
        except BaseException:
            self.store.set_release_status(app, release.version, "failed")
            self.builder.remove(release.image)
            if network is not None:
                network.join()
                self._drop_unused_network(app)
                self._refill_networks()
            raise
        self._after_live(app, release, progress, timings)
        return release

    def _wait_network(self, network: threading.Thread, timings: Timings) -> None:
        """A start's wait for the network made beside the build (the longest counts as
        ``netwait``; ``start`` counts without it)."""
        waited = time.monotonic()
        network.join()
        took = time.monotonic() - waited
        with self._timing_lock:
            timings.stages["netwait"] = max(timings.stages.get("netwait", 0.0), took)

    def _refill_networks(self) -> None:
        """A spare network this deploy's app claimed is made again now (by serve's
        filler thread), once the deploy's starts are done or it failed."""
        refill = getattr(self.runtime, "refill_networks", None)
        if refill is not None:
            refill()

    def _drop_unused_network(self, app: str) -> None:
        """After a failed deploy of an app that never went live (its first push): the
        network made beside the build goes again, as nothing else would remove it while
        the app exists (a later deploy makes it anew). Best effort: logged, not raised."""
        drop = getattr(self.runtime, "remove_network_if_unused", None)
        try:
            if drop is not None and self.store.get_app(app).current_version is None:
                drop(app)
        except Exception:  # noqa: BLE001 - the deploy's own error is the one to report
            log.warning("cannot remove the network of %s after its failed deploy", app,
                        exc_info=True)

    def prepare_network(self, app: str) -> threading.Thread | None:
        """The app's network made (or found) in a thread: beside the build, not after it,
        and from the moment a push creates the app (``Platform.create_app_for_push``:
        the refs' advertisement, the client's pack and its storing overlap it too)."""
        prepare = getattr(self.runtime, "prepare_network", None)
        if prepare is None:
            return None
        thread = threading.Thread(target=prepare, args=(app,), daemon=True,
                                  name=f"network-{app}")
        thread.start()
        return thread

    def _build(self, app: str, release: Release, repo: Repo, commit: bytes, spec: AppSpec,
               progress: ProgressFn, timings: Timings, start: float) -> None:
        """The image of ``release`` from ``commit`` (and the predeploy script's commit)."""
        version, tag = release.version, release.image
        progress(f"-----> Building {app} (v{version}) from {commit.decode()[:7]}")
        self._hooks("pre-build", {"app": app, "release": version, "image": tag,
                                  "commit": commit.decode(), "actor": release.created_by},
                    progress)
        files, dockerfile, buildargs = self._context_files(app, repo, commit, progress)
        context = build_context(repo.object_store, commit, files,
                                self.settings.max_context_bytes, self.settings.max_context_files)
        start = timings.mark("prepare", start)
        with context:
            faults.point("build")
            self.builder.build(context, tag, {}, progress, buildargs, dockerfile)
        timings.mark("build", start)
        if spec.predeploy:
            self._run_once(app, version, tag, "predeploy", spec.predeploy, release.config,
                           progress, commit_to=tag)

    def _app_spec(self, repo: Repo, commit: bytes) -> AppSpec:
        store = repo.object_store
        text = read_blob(store, commit, "app.json")
        spec = parse_app_json(text.decode("utf-8", "replace")) if text else AppSpec()
        checks = read_blob(store, commit, "CHECKS")
        if checks and "web" not in spec.healthchecks:
            spec = dataclasses.replace(spec, healthchecks={
                **spec.healthchecks, "web": parse_checks(checks.decode("utf-8", "replace"))})
        return spec

    def _context_files(self, app: str, repo: Repo, commit: bytes,
                       progress: ProgressFn) -> tuple[dict[str, bytes], str, dict[str, str]]:
        """Files to add to the context, the Dockerfile's name and the build args."""
        paths = tree_paths(repo.object_store, commit)
        found = buildpacks.detect(paths, self.store.get_app(app).buildpack)
        if found.name == buildpacks.DOCKERFILE:
            progress(f"-----> Using the repo's Dockerfile ({found.reason})")
            text = read_blob(repo.object_store, commit, "Dockerfile") or b""
            policy.check_dockerfile(text.decode("utf-8", "replace"), self.image_policy(app))
            return {}, "Dockerfile", {}
        progress(f"-----> Buildpack: {found.name} ({found.reason})")
        from .images import require_image  # a clear error when the base image is missing

        require_image(self.builder.client, self.settings, found.name)
        name = ".gitpaas.Dockerfile"
        return ({name: buildpacks.dockerfile(found.name)}, name,
                buildpacks.build_args(found.name, self.settings))

    def image_policy(self, app: str) -> policy.ImagePolicy:
        """The images ``app``'s Dockerfile may start from (see ``build/policy.py``)."""
        return policy.ImagePolicy(self.settings.instance, app, policy.allowed_patterns(
            self.settings.build_allowed_images, self.settings.base_images.values()))

    @staticmethod
    def _processes(repo: Repo, commit: bytes) -> dict[str, str]:
        text = read_blob(repo.object_store, commit, "Procfile")
        return procfile.parse(text.decode("utf-8", "replace")) if text else {}

    def rebuild_image(self, app: str, repo: Repo, release: Release,
                      progress: ProgressFn) -> None:
        """Build ``release``'s commit again under its image name (a restore onto a
        machine without the image), missing base images included; predeploy runs again."""
        commit = release.commit.encode()
        progress(f"-----> Rebuilding {release.image} from {release.commit[:7]}")
        paths = tree_paths(repo.object_store, commit)
        found = buildpacks.detect(paths, self.store.get_app(app).buildpack)
        if found.name != buildpacks.DOCKERFILE:
            from .images import build_images, require_image

            try:
                require_image(self.builder.client, self.settings, found.name)
            except GitPaasError:
                if found.name in self.settings.base_images:
                    raise  # the operator's own image: not ours to build
                progress(f"-----> Building the base image {found.name}")
                build_images(self.settings, [found.name], progress=progress,
                             client=self.builder.client)
        files, dockerfile, buildargs = self._context_files(app, repo, commit, progress)
        context = build_context(repo.object_store, commit, files,
                                self.settings.max_context_bytes, self.settings.max_context_files)
        with context:
            self.builder.build(context, release.image, {}, progress, buildargs, dockerfile)
        spec = self._app_spec(repo, commit)
        if spec.predeploy:
            self._run_once(app, release.version, release.image, "predeploy", spec.predeploy,
                           release.config, progress, commit_to=release.image)

    # -- from a config change, a scale or a rollback ------------------------------------

    def deploy_release(self, app: str, source: Release, config: dict[str, str],
                       description: str, actor: str, progress: ProgressFn) -> Release:
        """A new release with ``source``'s image and ``config``, rolled out like a push."""
        release = self.store.add_release(app, source.image, source.commit, config,
                                         source.processes, description, actor,
                                         extra=source.extra)
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

    def _mounts(self, app: str, image: str) -> list[StorageMount]:
        """The app's storage (see ``storage:mount``): its volumes, mounted by name, and the
        host directories an admin bound.

        A row that still names a host directory inside ``<data_dir>/storage/<app>/`` (made
        before storage became volumes) is moved first: its files are copied into the
        volume of the same name (``legacy_storage_name``) and the row then names the
        volume; the old directory is kept until ``apps:destroy``.
        An admin's host directory that became a symlink is refused.
        """
        mounts = []
        own = self.settings.storage_dir / app
        for m in self.store.mounts(app):
            if m.host_path.startswith("/"):
                relative = _inside(Path(m.host_path), own)
                if relative is None:
                    mounts.append(StorageMount(self._admin_bind(m.host_path),
                                               m.container_path, volume=False))
                    continue
                name = self._move_legacy(app, m.host_path, m.container_path, relative,
                                         image)
            else:
                name = m.host_path
            mounts.append(StorageMount(self.runtime.volumes.ensure(app, name),
                                       m.container_path))
        return mounts

    @staticmethod
    def _admin_bind(path: str) -> str:
        if Path(path).resolve() != Path(path):
            raise DeployError(f"storage {path} is no longer a plain directory"
                              " (a symlink?): fix or unmount it")
        return path

    def _move_legacy(self, app: str, host_path: str, target: str, relative: str,
                     image: str) -> str:
        """Copy a legacy storage directory into its volume; the row names the volume."""
        name = legacy_storage_name(relative)
        volumes = self.runtime.volumes
        if not volumes.exists(app, name):
            volume = volumes.ensure(app, name)
            helper = self.settings.storage_helper_image or image
            try:
                volumes.copy_host_dir(volume, helper, self.settings.storage_dir / app,
                                      relative)
            except GitPaasError:
                volumes.client.volumes.get(volume).remove(force=True)
                raise
            log.info("storage of %s: moved %s into volume %s", app, host_path, volume)
        self.store.replace_mount_source(app, target, host_path, name)
        return name

    def _limits(self, app: str, process: str) -> tuple[str | None, int | None]:
        resources = self.store.resources(app)
        memory, cpus = resources.get(process) or resources.get("*") or (
            self.settings.default_memory, self.settings.default_cpus)
        return (memory or None), (int(cpus * 1e9) if cpus else None)

    def _run_once(self, app: str, version: int, image: str, what: str, command: str,
                  config: dict[str, str], progress: ProgressFn,
                  commit_to: str | None = None) -> None:
        progress(f"-----> Running {what}: {command}")
        env = {**config, "PORT": "5000", "GITPAAS_APP": app, "GITPAAS_RELEASE": f"v{version}"}
        process = what.split()[0]  # "release phase" runs as process "release"
        code = self.runtime.run_once(app, version, image, process, env, command,
                                     lambda line: progress(f"       {line}"),
                                     commit_to=commit_to, mounts=self._mounts(app, image))
        if code != 0:
            raise DeployError(f"{what} failed (exit {code})")

    def run_cron(self, app: str, release: Release, command: str, index: int) -> int:
        """A cron job: ``command`` (a shell line) in a one-off container of ``release``;
        its output is kept for ``logs -p cron``. Returns the exit status."""
        memory, nano_cpus = self._limits(app, "cron")
        env = {**self._env(release, "cron", index)}
        return self.runtime.run_once(app, release.version, release.image, "cron", env,
                                     command, lambda line: None,
                                     timeout=self.settings.run_timeout,
                                     mounts=self._mounts(app, release.image), replica=index,
                                     keep_logs=True, mem_limit=memory, nano_cpus=nano_cpus)

    def notify(self, event: str, payload: dict[str, Any]) -> None:
        """Run the hooks of ``event`` (the webhook among them); never raises."""
        try:
            self._hooks(event, payload, lambda line: log.info("%s hook: %s", event, line))
        except GitPaasError as exc:
            log.warning("%s hook failed: %s", event, exc.message)

    def run_command(self, app: str, argv: list[str], term: Terminal,
                    process: str = "run") -> int:
        """``run``: ``argv`` in a one-off container of the current release, with the app's
        config, storage and the limits of ``process``; returns its exit status."""
        release = self.store.current_release(app)
        if release is None:
            raise UserError(f"{app} has no release yet: push first")
        memory, nano_cpus = self._limits(app, process)
        env = self._env(release, process, 1)
        env["DYNO"] = "run.1"
        return self.runtime.run_attached(app, release.version, release.image, process, env,
                                         argv, term, timeout=self.settings.run_timeout,
                                         mounts=self._mounts(app, release.image),
                                         mem_limit=memory,
                                         nano_cpus=nano_cpus)

    def _checks(self, release: Release, process: str) -> list[WebCheck]:
        raw = (release.extra.get("healthchecks") or {}).get(process)
        if raw:
            return [WebCheck(**c) for c in raw]
        return [WebCheck(deadline=self.settings.health_timeout)]

    def start_container(self, app: str, release: Release, process: str, replica: int,
                        command: str, mounts: list[StorageMount] | None = None
                        ) -> ContainerInfo:
        """Start one container of ``release`` (used by the roll-out and the reconciler)."""
        memory, nano_cpus = self._limits(app, process)
        ready = self._network_ready.get(app)
        extra = {"before_start": ready} if ready is not None else {}
        return self.runtime.start(app, release.version, release.image, process, replica,
                                  self._env(release, process, replica), command or None,
                                  web=process == "web", mem_limit=memory, nano_cpus=nano_cpus,
                                  mounts=self._mounts(app, release.image) if mounts is None
                                  else mounts, **extra)

    def start_process(self, app: str, release: Release, process: str, replicas: int,
                      command: str, mounts: list[StorageMount] | None = None
                      ) -> list[ContainerInfo]:
        """Start every replica of one process type as one service (``runtime: swarm``;
        used by the roll-out and the reconciler)."""
        memory, nano_cpus = self._limits(app, process)
        env = self._env(release, process, 0)
        env.pop("DYNO")  # the runtime sets it per replica
        runtime: Any = self.runtime  # a SwarmRuntime (services=True)
        started: list[ContainerInfo] = runtime.start_process(
            app, release.version, release.image, process, replicas, env, command or None,
            web=process == "web", mem_limit=memory, nano_cpus=nano_cpus,
            mounts=self._mounts(app, release.image) if mounts is None else mounts)
        return started

    def _start_services(self, app: str, release: Release,
                        mounts: list[StorageMount]) -> list[ContainerInfo]:
        counts: dict[str, tuple[int, str]] = {}
        for (process, _), command in procfile.desired(
                release.processes, self.store.formation(app)).items():
            counts[process] = (counts.get(process, (0, ""))[0] + 1, command)
        started: list[ContainerInfo] = []
        try:
            for process, (replicas, command) in sorted(counts.items()):
                started += self.start_process(app, release, process, replicas, command,
                                              mounts)
        except BaseException:
            self.runtime.remove(started, stop_timeout=2)
            raise
        return started

    def _start_all(self, app: str, release: Release,
                   check: Callable[[ContainerInfo, Callable[[ContainerInfo],
                                                            ContainerInfo | None]], None]
                   | None = None,
                   all_started: Callable[[], None] | None = None) -> list[ContainerInfo]:
        """Start every container of the formation, side by side (at most
        ``MAX_PARALLEL_STARTS`` at once); all or nothing.

        ``check`` runs on each container as soon as it is started, in a thread of its own,
        while the others still start (a web replica's health check need not wait for the
        last replica's start); it gets a ``refresh`` whose first call returns the info the
        start just read (no second inspect) and which raises once any start or check
        failed, so no check waits out its deadline for a deploy that failed already.
        ``all_started`` runs when the last start returned (before the checks are waited
        for). Any failure removes every started container and raises the first one.
        With ``runtime: swarm`` (services) neither is used: the caller checks after."""
        mounts = self._mounts(app, release.image)
        if getattr(self.runtime, "services", False) is True:
            return self._start_services(app, release, mounts)
        desired = list(procfile.desired(release.processes, self.store.formation(app)).items())
        slots: list[ContainerInfo | None] = [None] * len(desired)
        failed = threading.Event()
        errors: list[BaseException] = []  # in the order they happened
        lock = threading.Lock()

        def fail(exc: BaseException) -> None:
            with lock:
                errors.append(exc)
            failed.set()

        def job(index: int, process: str, replica: int, command: str,
                checker: ThreadPoolExecutor) -> None:
            try:
                if failed.is_set():
                    return
                info = self.start_container(app, release, process, replica, command, mounts)
                slots[index] = info
            except BaseException as exc:  # noqa: BLE001 - re-raised by _start_all
                fail(exc)
                return
            if check is not None:
                checker.submit(watched, info)  # the checker's exit waits for it

        def watched(info: ContainerInfo) -> None:
            try:
                assert check is not None
                check(info, self._refresher(info, failed))
            except _Aborted:
                pass
            except BaseException as exc:  # noqa: BLE001 - re-raised by _start_all
                fail(exc)

        # Docker starts containers concurrently: the replicas start side by side.
        with ThreadPoolExecutor(max_workers=len(desired) or 1,
                                thread_name_prefix=f"check-{app}") as checker:
            with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_STARTS, len(desired) or 1),
                                    thread_name_prefix=f"start-{app}") as pool:
                for index, ((process, replica), command) in enumerate(desired):
                    pool.submit(job, index, process, replica, command, checker)
            if all_started is not None and not failed.is_set():
                try:
                    all_started()
                except BaseException as exc:  # noqa: BLE001 - re-raised below
                    fail(exc)
        started = [info for info in slots if info is not None]
        if errors:
            self.runtime.remove(started, stop_timeout=2)
            raise errors[0]
        return started

    def _refresher(self, info: ContainerInfo, failed: threading.Event
                   ) -> Callable[[ContainerInfo], ContainerInfo | None]:
        """A check's ``refresh`` of ``info``: the start's own reading first, then Docker's;
        raises ``_Aborted`` once ``failed`` is set."""
        fresh = [info]

        def refresh(current: ContainerInfo) -> ContainerInfo | None:
            if failed.is_set():
                raise _Aborted
            if fresh:
                return fresh.pop()
            return self.runtime.get(current.id)
        return refresh

    def _check_one(self, release: Release, progress: ProgressFn, info: ContainerInfo,
                   refresh: Callable[[ContainerInfo], ContainerInfo | None]) -> None:
        """A web container's health checks, any other process's stable window."""
        if info.process == "web":
            progress(f"-----> Checking {info.process}.{info.replica}")
            for check in self._checks(release, "web"):
                wait_healthy(info, check, refresh, self._tail_logs)
        else:
            wait_stable(info, self.settings.process_check_seconds, refresh, self._tail_logs)

    def _check_all(self, release: Release, started: list[ContainerInfo],
                   progress: ProgressFn) -> None:
        refresh = self.runtime.get
        logs = self._tail_logs
        for info in started:
            if info.process == "web":
                progress(f"-----> Checking {info.process}.{info.replica}")
                for check in self._checks(release, "web"):
                    wait_healthy(info, check, lambda i: refresh(i.id), logs)
        # Every other process is watched side by side, each for the whole window.
        others = [c for c in started if c.process != "web"]
        if others:
            with ThreadPoolExecutor(max_workers=len(others),
                                    thread_name_prefix=f"watch-{release.app}") as pool:
                for future in [pool.submit(wait_stable, info,
                                           self.settings.process_check_seconds,
                                           lambda i: refresh(i.id), logs)
                               for info in others]:
                    future.result()

    def _tail_logs(self, info: ContainerInfo) -> str:
        return self.runtime.logs(info.id, 20)

    def _roll_out(self, app: str, release: Release, progress: ProgressFn,
                  timings: Timings) -> None:
        self._go_live(app, release, progress, timings)
        self._after_live(app, release, progress, timings)

    def _go_live(self, app: str, release: Release, progress: ProgressFn,
                 timings: Timings) -> None:
        """Start, check and route ``release``; on any failure undo all of it (the old
        release keeps serving) and mark it ``failed``."""
        started: list[ContainerInfo] = []
        previous: dict[str, list[str]] | None = None
        now = time.monotonic()
        try:
            self._hooks("pre-release", release, progress)
            if RELEASE_PHASE in release.processes:
                self._run_once(app, release.version, release.image, "release phase",
                               release.processes[RELEASE_PHASE], release.config, progress)
            progress(f"-----> Releasing v{release.version}")
            faults.point("start")
            since = now

            def all_started() -> None:
                nonlocal since
                since = timings.mark("start", now)
                # a first deploy's starts waited for the network: that is netwait's
                timings.stages["start"] -= timings.stages.get("netwait", 0.0)
                faults.point("check")

            if getattr(self.runtime, "services", False) is True:
                started = self._start_all(app, release)
                all_started()
                self._check_all(release, started, progress)
            else:
                # Each container's check starts with its start: "check" is what is left
                # of the checks once the last container started.
                started = self._start_all(
                    app, release, functools.partial(self._check_one, release, progress),
                    all_started)
            now = timings.mark("check", since)
            web = [c for c in started if c.process == "web"]
            hosts = app_hosts(self.settings, app, self.store.domains(app))
            previous = self.routes.get_many(hosts)
            if web:
                self.routes.swap(app, hosts, [c.backend for c in web])
            else:
                self.routes.remove(hosts)
            faults.point("swap")
            self.store.activate_release(app, release.version)
            now = timings.mark("swap", now)
        except BaseException as exc:
            if previous is not None:
                self._restore_routes(app, previous)
            self.runtime.remove(started, stop_timeout=2)
            self.store.set_release_status(app, release.version, "failed")
            if isinstance(exc, GitPaasError):
                progress(f" !     {exc.message}")
            raise
        progress(f"-----> {app} v{release.version} is live at {app_url(self.settings, app)}")

    def _restore_routes(self, app: str, previous: dict[str, list[str]]) -> None:
        """Point the hosts back at the old release (a failure after the swap)."""
        for host, frontend in previous.items():
            try:
                self.routes.swap(frontend[0] if frontend else app, [host], frontend[1:])
            except GitPaasError:
                log.exception("cannot restore the route of %s (the reconciler will)", host)

    def _after_live(self, app: str, release: Release, progress: ProgressFn,
                    timings: Timings) -> None:
        """Postdeploy script and hooks, then retire and prune. The release is live: any
        error here is reported and logged, never a failed deploy."""
        now = time.monotonic()
        try:
            postdeploy = release.extra.get("postdeploy")
            if postdeploy:
                try:
                    self._run_once(app, release.version, release.image, "postdeploy",
                                   postdeploy, release.config, progress)
                except GitPaasError as exc:
                    progress(f" !     {exc.message} (the release is live)")
            try:
                self._hooks("post-deploy", release, progress)
            except GitPaasError as exc:
                progress(f" !     {exc.message}")
        except Exception:  # noqa: BLE001 - after go-live nothing may undo the release
            log.exception("after go-live of %s v%d", app, release.version)
            progress(" !     an internal error after go-live (the release is live; the server"
                     " log has the details)")
        finally:
            self.retire(app, release.version)
        timings.mark("after", now)
        log.info("deploy timings %s v%d: %s", app, release.version, timings.text())

    def retire(self, app: str, version: int) -> None:
        """Retire, off the caller's path, the containers of ``app``'s releases older than
        ``version`` (live now). One retirement at a time per app: a burst of releases is
        retired in passes, each below the newest live version, so no more than the live
        release and the one being retired run once the burst ends."""
        with self._retire_lock:
            self._retire_below[app] = max(version, self._retire_below.get(app, 0))
            if app in self._retirers:
                return  # the running retirer takes the new version on its next pass
            thread = threading.Thread(target=self._retirer, args=(app,), daemon=True,
                                      name=f"retire-{app}")
            self._retirers[app] = thread
        thread.start()

    def _retirer(self, app: str) -> None:
        try:
            while True:
                with self._retire_lock:
                    version = self._retire_below.pop(app, None)
                    if version is None:
                        del self._retirers[app]
                        return
                self._retire(app, version)
        except BaseException:
            with self._retire_lock:  # the next release starts a new retirer
                self._retirers.pop(app, None)
            raise

    def _retire(self, app: str, version: int) -> None:
        """Drain (routes already point elsewhere), SIGTERM, wait, SIGKILL, remove; prune.

        Only containers of releases older than ``version`` are touched, so listing them
        here, off the push's path, cannot catch a newer release's containers. They are
        stopped side by side: a pass lasts one ``stop_timeout`` at most, however many."""
        old: list[ContainerInfo] = []
        try:
            old = [c for c in self.runtime.list(app) if c.release < version]
            if old:
                time.sleep(self.settings.drain_seconds)
                faults.point("retire")
                log.info("retiring %s", ", ".join(c.name for c in old))
                with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_STOPS, len(old)),
                                        thread_name_prefix=f"stop-{app}") as pool:
                    list(pool.map(lambda c: self.runtime.remove(
                        [c], stop_timeout=self.settings.stop_timeout), old))
            self.prune_images(app)
        except Exception:  # noqa: BLE001 - the reconciler removes what is left
            log.exception("retiring %s failed", [c.name for c in old])

    def prune_images(self, app: str) -> None:
        """Keep the images of the last ``keep_releases`` good releases; remove the rest."""
        releases = self.store.list_releases(app, limit=10_000)
        good = [r for r in releases if r.status == "succeeded"]
        keep = {r.image for r in good[: self.settings.keep_releases]}
        # A deploy under way (its release is pending) needs its image: a retirement that
        # finishes during the next deploy must not remove it (found by tests/load).
        keep |= {r.image for r in releases if r.status == "pending"}
        current = self.store.current_release(app)
        if current:
            keep.add(current.image)
        for image in {r.image for r in releases} - keep:
            self._remove_image(image)

    def remove_images(self, app: str) -> None:
        """Remove the image of every release of ``app`` (``apps:destroy``)."""
        for image in {r.image for r in self.store.list_releases(app, limit=100_000)}:
            self._remove_image(image)

    def _remove_image(self, image: str) -> None:
        """Remove ``image`` here and, with runtime swarm, from the nodes' registry."""
        self.builder.remove(image)
        forget = getattr(self.runtime, "forget_image", None)
        if forget is not None:
            try:
                forget(image)
            except GitPaasError as exc:
                log.warning("cannot delete %s from the registry: %s", image, exc.message)

    def wait_retired(self, timeout: float = 60) -> None:
        """Wait for retirements under way (for tests and shutdown)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._retire_lock:
                threads = list(self._retirers.values())
            if not threads:
                return
            for thread in threads:
                thread.join(max(0.0, deadline - time.monotonic()))
