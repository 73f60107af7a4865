"""App containers on the local Docker engine, labelled and named by instance.

Names: ``<instance>.<app>.v<release>.<process>.<replica>`` (app and process names hold no
dot, so names never collide). Labels carry the same facts; queries use the labels.

Where the router reaches a web container: with the default ``container_host``
(127.0.0.1, the router on this host) and app networks, at the container's own address on
its app's bridge, port ``PORT``; nothing is published (issue 17, scale). A published port
costs Docker three iptables rules, each of the six iptables runs that add and remove them
reads the whole ruleset (iptables-nft), and one docker-proxy process: with 200 apps a
container's start took 1.2-1.3x, and a new app's network create 1.5x, what they take
when the other apps publish nothing (docs/performance.md, scale round 3). Another app's
containers still cannot reach that address (Docker's isolation chains between bridges),
builds neither (build/sandbox.py drops the app pool). With any other ``container_host``
(a router elsewhere) the web port is published on that address as before; a container
that has a published port (made before) is reached through it.
"""

from __future__ import annotations

import io
import logging
import re
import secrets
import shlex
import tarfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import docker
import docker.errors
from docker.models.containers import Container
from docker.types import Mount

from ..errors import DeployError, ServiceError
from ..terminal import Terminal
from .attach import stream
from .network import AppNetworks
from .volumes import StorageMount, Volumes

PORT = 5000
DIRECT_HOST = "127.0.0.1"  # container_host's default: the router runs on this host
RUN_SUFFIX = re.compile(r"[0-9a-f]{8}")  # run_attached's container names end so
ENV_FILE = ".gitpaas-env"
LABEL = "gitpaas"
ARCHIVE_TAIL = 500  # log lines of a removed container handed to ``on_remove``
log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class ContainerInfo:
    """What gitpaas knows of one app container."""

    id: str
    name: str
    app: str
    release: int
    process: str
    replica: int
    status: str
    host: str
    port: int | None
    started_at: str
    restart_count: int = 0
    # "run" for a user's ``run``, "cron" for a cron job, "1" for a deploy's one-offs, "".
    oneoff: str = ""

    @property
    def backend(self) -> str:
        return f"http://{self.host}:{self.port}"


def container_name(instance: str, app: str, release: int, process: str,
                   replica: int | str) -> str:
    """``<instance>.<app>.v<release>.<process>.<replica>`` (a one-off's replica: a
    random suffix)."""
    return f"{instance}.{app}.v{release}.{process}.{replica}"


def env_tar(env: Mapping[str, str]) -> bytes:
    """A tar holding ``ENV_FILE`` (mode 0600): ``export K='v'`` lines for ``sh``."""
    data = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items()).encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(ENV_FILE)
        info.size, info.mode = len(data), 0o600
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def docker_mounts(mounts: Sequence[StorageMount] | None) -> list[Mount] | None:
    """docker-py ``mounts``: tenant storage by volume name, admins' binds by path."""
    return [m.docker_mount() for m in mounts] if mounts else None


def summary_name(summary: Mapping[str, Any]) -> str:
    """A container summary's name (Docker lists it as ``/name``)."""
    return next(iter(summary.get("Names") or []), "").lstrip("/")


def created_at(summary: Mapping[str, Any]) -> str:
    """A summary's creation time as Docker writes timestamps (RFC 3339, UTC)."""
    created = summary.get("Created")
    if not created:
        return ""
    return datetime.fromtimestamp(int(created), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def owned(instance: str, summary: Mapping[str, Any]) -> bool:
    """Whether gitpaas made this container: its labels and its name must agree.

    Labels alone prove nothing: a build's intermediate container carries whatever ``LABEL``
    lines the tenant's Dockerfile holds. Names are chosen by whoever calls Docker's API,
    and a build's containers get random ones, so the name is what a tenant cannot forge.
    """
    labels = summary.get("Labels") or {}
    try:
        expected = container_name(
            instance, labels[f"{LABEL}.app"], int(labels[f"{LABEL}.release"]),
            labels[f"{LABEL}.process"], int(labels[f"{LABEL}.replica"]))
    except (KeyError, ValueError):
        return False
    numbers = labels[f"{LABEL}.release"] + labels[f"{LABEL}.replica"]
    if labels.get(f"{LABEL}.instance") != instance or not numbers.isascii():
        return False
    name = summary_name(summary)
    if labels.get(f"{LABEL}.oneoff") == "run":  # run_attached: a random suffix, replica 0
        prefix = container_name(instance, labels[f"{LABEL}.app"],
                                int(labels[f"{LABEL}.release"]), "run", "")
        return name.startswith(prefix) and bool(RUN_SUFFIX.fullmatch(name[len(prefix):]))
    return name == expected


# Capabilities app containers keep (Docker's defaults minus what web apps do not need).
# Kept: CHOWN, DAC_OVERRIDE, FOWNER, FSETID (entrypoints that fix the owner and mode of
# their files as root), SETUID, SETGID (apache, php-fpm, nginx start as root and switch
# to their user; gosu/su), KILL (a root master signals workers of another user),
# NET_BIND_SERVICE (servers that bind a port below 1024 inside the container).
# Dropped: NET_RAW (raw sockets: ARP/ICMP spoofing on the bridge), MKNOD, AUDIT_WRITE,
# SETFCAP, SETPCAP, SYS_CHROOT.
KEPT_CAPABILITIES = ("CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "SETUID", "SETGID", "KILL",
                     "NET_BIND_SERVICE")


@dataclass(frozen=True)
class Sandbox:
    """How every app container is confined: its app's network, privileges, pids."""

    networks: AppNetworks | None = None
    pids_limit: int = 0  # 0: none

    def options(self, app: str, cached: bool = False, ensure: bool = True) -> dict[str, Any]:
        """docker-py ``containers.create`` arguments for one container of ``app``
        (``cached``: the app's network as ``AppNetworks.ensure`` last found it; not
        ``ensure``: only its name, for a create while the network is still being made:
        Docker checks the network at the start, not at the create)."""
        opts: dict[str, Any] = {"security_opt": ["no-new-privileges"], "cap_drop": ["ALL"],
                      "cap_add": list(KEPT_CAPABILITIES)}
        if self.pids_limit:
            opts["pids_limit"] = self.pids_limit
        if self.networks is not None:
            opts["network"] = (self.networks.ensure(app, cached) if ensure
                               else self.networks.name(app))
        return opts

    def forget_network(self, app: str) -> None:
        """After a start failed for want of the app's network: look it up again."""
        if self.networks is not None:
            self.networks.forget(app)


def network_missing(exc: docker.errors.APIError) -> bool:
    """Whether Docker refused a start because the container's network is gone."""
    text = str(exc.explanation or exc)
    return exc.status_code == 404 and "network" in text and "not found" in text


class Follow(Generic[T]):
    """Items of a Docker stream as they come; ``close`` ends it from any thread."""

    def __init__(self, raw: Any, items: Iterator[T]) -> None:
        self._raw = raw  # docker-py's CancellableStream
        self._items = items

    def __iter__(self) -> Iterator[T]:
        try:
            yield from self._items
        except docker.errors.DockerException as exc:
            raise ServiceError(f"Docker is unavailable: {exc}") from exc

    def close(self) -> None:
        """Close the connection: the reader's iteration ends (or raises) at once."""
        try:
            self._raw.close()
        except Exception:  # noqa: BLE001 - closing a stream that broke already
            log.debug("closing a Docker stream failed", exc_info=True)


class DockerRuntime:
    """Starts, lists and retires app containers."""

    def __init__(self, client: docker.DockerClient, instance: str, host: str = "127.0.0.1",
                 on_remove: Callable[[ContainerInfo, str], None] | None = None,
                 sandbox: Sandbox | None = None):
        self.client = client
        self.instance = instance
        self.host = host
        # Called with a container and its last log lines (timestamped) before removal.
        self.on_remove = on_remove
        self.volumes = Volumes(client, instance)
        self.sandbox = sandbox or Sandbox()

    def remove_network(self, app: str) -> None:
        """Remove the app's network (after its containers: ``apps:destroy``)."""
        if self.sandbox.networks is not None:
            self.sandbox.networks.remove(app)

    def remove_network_if_unused(self, app: str) -> bool:
        """Remove the app's network unless a container is attached (``AppNetworks``)."""
        if self.sandbox.networks is None:
            return False
        return self.sandbox.networks.remove_if_unused(app)

    def prepare_network(self, app: str) -> None:
        """Make sure the app's network exists, ahead of the starts (a deploy calls this
        beside its build, so that a first deploy's network creation, 0.1-0.4 s of
        Docker's, overlaps the build). A failure is only logged: the start reports it."""
        if self.sandbox.networks is None:
            return
        try:
            self.sandbox.networks.ensure(app, cached=True)
        except Exception:  # noqa: BLE001 - the start's own ensure raises it properly
            log.debug("preparing the network of %s failed", app, exc_info=True)

    def refill_networks(self) -> None:
        """A deploy's starts are done: the spare networks may be made again now."""
        if self.sandbox.networks is not None:
            self.sandbox.networks.request_fill()

    @property
    def direct(self) -> bool:
        """Whether new web containers are reached at their app-bridge address (the
        default ``container_host`` and app networks) rather than a published port."""
        return self.sandbox.networks is not None and self.host == DIRECT_HOST

    def _address(self, labels: Mapping[str, str], settings: Mapping[str, Any],
                 published: int | None) -> tuple[str, int | None]:
        """Where the router reaches a container: its published port on ``host``, else
        (a web container, not a one-off, with direct routing) its address on its app's
        bridge and ``PORT``; no port if neither (not web, not running)."""
        if published is not None:
            return self.host, published
        networks = self.sandbox.networks
        if networks is None or not self.direct or labels.get(f"{LABEL}.process") != "web" \
                or labels.get(f"{LABEL}.oneoff"):
            return self.host, None
        # A web container is on its app's network alone: its one address, with no lookup
        # of the app's network name (the store, for a claimed spare) per container listed.
        on = settings.get("Networks") or {}
        attached = (next(iter(on.values())) if len(on) == 1
                    else on.get(networks.name(labels.get(f"{LABEL}.app", "")))) or {}
        address = attached.get("IPAddress") or ""
        return (address, PORT) if address else (self.host, None)

    def _info(self, c: Container) -> ContainerInfo:
        labels = c.labels
        port = None
        settings = c.attrs.get("NetworkSettings") or {}
        bindings = (settings.get("Ports") or {}).get(f"{PORT}/tcp")
        if bindings:
            port = int(bindings[0]["HostPort"])
        host, port = self._address(labels, settings, port)
        state = c.attrs.get("State", {})
        return ContainerInfo(
            id=c.id or "", name=c.name or "", app=labels.get(f"{LABEL}.app", ""),
            release=int(labels.get(f"{LABEL}.release", "0")),
            process=labels.get(f"{LABEL}.process", ""),
            replica=int(labels.get(f"{LABEL}.replica", "0")),
            status=c.status, host=host, port=port,
            started_at=state.get("StartedAt", ""), restart_count=c.attrs.get("RestartCount", 0),
            oneoff=labels.get(f"{LABEL}.oneoff", ""))

    def start(self, app: str, release: int, image: str, process: str, replica: int,
              env: Mapping[str, str], command: str | None = None, web: bool = False,
              mem_limit: str | None = None, nano_cpus: int | None = None,
              mounts: Sequence[StorageMount] | None = None,
              before_start: Callable[[], None] | None = None) -> ContainerInfo:
        """Create and start one container; a web container's $PORT is reached at its
        address on the app's bridge, or published on ``host`` (see the module's doc).

        ``mounts``: the app's storage (volumes by name; admins' host binds).
        ``before_start``: the app's network is being made elsewhere (a first deploy):
        the container is created meanwhile, and this (waiting for the network) runs
        between the create and the start.
        """
        name = container_name(self.instance, app, release, process, replica)
        labels = {f"{LABEL}.instance": self.instance, f"{LABEL}.app": app,
                  f"{LABEL}.release": str(release), f"{LABEL}.process": process,
                  f"{LABEL}.replica": str(replica),
                  # set, so that no image label of that name can make this a one-off
                  f"{LABEL}.oneoff": ""}
        kwargs: dict[str, Any] = {}
        if web and not self.direct:
            kwargs["ports"] = {f"{PORT}/tcp": (self.host, None)}
        if mem_limit:
            kwargs["mem_limit"] = mem_limit
        if nano_cpus:
            kwargs["nano_cpus"] = nano_cpus
        if mounts:
            kwargs["mounts"] = docker_mounts(mounts)
        kwargs.update(
            command=["/bin/sh", "-c", command] if command else None, name=name,
            environment=dict(env), labels=labels, init=True,
            restart_policy={"Name": "unless-stopped"},
            log_config={"Type": "json-file", "Config": {"max-size": "10m", "max-file": "3"}},
            hostname=f"{app}-{process}-{replica}")
        try:
            try:
                c = self._create_and_start(app, image, name, kwargs, cached=True,
                                           before_start=before_start)
            except docker.errors.NotFound as exc:
                if not network_missing(exc):
                    raise
                # The app's network went behind our back (Docker checks it at start, not
                # at create): look it up, make it again if need be, and start anew.
                self.sandbox.forget_network(app)
                c = self._create_and_start(app, image, name, kwargs, cached=False)
            c.reload()
            info = self._info(c)
            if web and info.port is None:
                c.reload()
                info = self._info(c)
            return info
        except docker.errors.ImageNotFound as exc:
            raise DeployError(f"image {image} is gone") from exc
        except docker.errors.APIError as exc:
            reason = exc.explanation or exc
            raise DeployError(f"cannot start {process}.{replica}: {reason}") from exc
        except docker.errors.DockerException as exc:
            raise ServiceError(f"Docker is unavailable: {exc}") from exc

    def _create_and_start(self, app: str, image: str, name: str, kwargs: dict[str, Any],
                          cached: bool, before_start: Callable[[], None] | None = None
                          ) -> Container:
        """Create (with the sandbox's options) and start one container (``before_start``:
        see ``start``; a network that still is not there then fails the start with
        "network not found", which ``start`` repairs)."""
        kwargs = {**kwargs, **self.sandbox.options(app, cached, ensure=before_start is None)}
        # create + start, not run: run would try to pull a missing image from a registry.
        try:
            c = self.client.containers.create(image, **kwargs)
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # not "the name is in use": a real failure
                raise
            # A leftover of a failed deploy holds the name: remove it and try again
            # (cheaper than looking the name up before every start).
            self._remove_by_name(name)
            c = self.client.containers.create(image, **kwargs)
        try:
            if before_start is not None:
                before_start()
            c.start()
        except docker.errors.NotFound as exc:
            if network_missing(exc):
                c.remove(force=True)
            raise
        return c

    def run_once(self, app: str, release: int, image: str, process: str,
                 env: Mapping[str, str], command: str, output: Callable[[str], None],
                 timeout: float = 3600, commit_to: str | None = None,
                 mounts: Sequence[StorageMount] | None = None, replica: int = 0,
                 keep_logs: bool = False, mem_limit: str | None = None,
                 nano_cpus: int | None = None) -> int:
        """Run ``command`` in a one-off container, stream its output, return its exit code.

        With ``commit_to``, a successful run's file system becomes that image tag
        (Dokku's predeploy). The container is removed in every case; with ``keep_logs``
        its lines go to the log archive first (``logs -p PROCESS``).
        """
        name = container_name(self.instance, app, release, process, replica)
        labels = {f"{LABEL}.instance": self.instance, f"{LABEL}.app": app,
                  f"{LABEL}.release": str(release), f"{LABEL}.process": process,
                  f"{LABEL}.replica": str(replica),
                  f"{LABEL}.oneoff": "cron" if process == "cron" else "1"}
        limits: dict[str, Any] = {"mem_limit": mem_limit} if mem_limit else {}
        if nano_cpus:
            limits["nano_cpus"] = nano_cpus
        container = None
        try:
            self._remove_by_name(name)
            # The environment comes from a file the command reads then deletes, not from
            # the container's config: a commit (predeploy) would bake config vars into the
            # image. Created and deleted in the container's own layer, it leaves no trace.
            container = self.client.containers.create(
                image, command=["/bin/sh", "-c", f". /{ENV_FILE} && rm -f /{ENV_FILE} && "
                                f"{command}"], name=name, labels=labels, init=True,
                mounts=docker_mounts(mounts), **limits, **self.sandbox.options(app))
            container.put_archive("/", env_tar(env))
            container.start()
            # A command that never ends must not hold the app's lock for ever.
            watchdog = threading.Timer(timeout, self._kill_quietly, args=(container,))
            watchdog.daemon = True
            watchdog.start()
            try:
                partial = ""
                for chunk in container.logs(stream=True, follow=True):
                    *lines, partial = (partial + chunk.decode("utf-8", "replace")).split("\n")
                    for line in lines:
                        output(line)
                if partial:
                    output(partial)
                code = int(container.wait(timeout=timeout + 10).get("StatusCode", 1))
            finally:
                watchdog.cancel()
            if code == 0 and commit_to:
                # Keep the image's own config (CMD, ENV, labels): the one-off container's
                # command and environment (config vars!) must not become the image's.
                repo, _, tag = commit_to.rpartition(":")
                original = self.client.images.get(image).attrs.get("Config") or {}
                container.commit(repository=repo, tag=tag, conf=original)
            return code
        except docker.errors.APIError as exc:
            raise DeployError(f"cannot run {process}: {exc.explanation or exc}") from exc
        except docker.errors.DockerException as exc:
            raise ServiceError(f"Docker is unavailable: {exc}") from exc
        finally:
            if container is not None:
                if keep_logs:
                    try:
                        container.reload()
                        self._archive(self._info(container))
                    except docker.errors.DockerException:
                        pass
                try:
                    container.remove(force=True)
                except docker.errors.DockerException:
                    pass

    def run_attached(self, app: str, release: int, image: str, process: str,
                     env: Mapping[str, str], argv: list[str], term: Terminal,
                     timeout: float = 3600, mounts: Sequence[StorageMount] | None = None,
                     mem_limit: str | None = None, nano_cpus: int | None = None) -> int:
        """``run``: ``argv`` in a one-off container of a release, attached to ``term``.

        Returns the command's exit status; the container is removed in every case, and
        killed when it outlives ``timeout``.
        """
        name = container_name(self.instance, app, release, "run", secrets.token_hex(4))
        labels = {f"{LABEL}.instance": self.instance, f"{LABEL}.app": app,
                  f"{LABEL}.release": str(release), f"{LABEL}.process": process,
                  f"{LABEL}.replica": "0", f"{LABEL}.oneoff": "run"}
        kwargs: dict[str, Any] = {"mem_limit": mem_limit} if mem_limit else {}
        if nano_cpus:
            kwargs["nano_cpus"] = nano_cpus
        if mounts:
            kwargs["mounts"] = docker_mounts(mounts)
        container = None
        try:
            # stdin_open without detach also sets StdinOnce: the container's stdin ends
            # when the user's input does.
            container = self.client.containers.create(
                image, command=argv or None, name=name, labels=labels, init=True,
                environment=dict(env), stdin_open=True, tty=term.tty, hostname=f"{app}-run",
                **kwargs, **self.sandbox.options(app))
            sock = container.attach_socket(params={"stdin": 1, "stdout": 1, "stderr": 1,
                                                   "stream": 1})
            container.start()
            if term.size:
                self._resize(container.resize, *term.size)
            term.on_resize = lambda cols, rows: self._resize(container.resize, cols, rows)
            watchdog = threading.Timer(timeout, self._kill_quietly, args=(container,))
            watchdog.daemon = True
            watchdog.start()
            try:
                stream(sock, term)
                return int(container.wait(timeout=timeout + 10).get("StatusCode", 1))
            finally:
                watchdog.cancel()
        except docker.errors.ImageNotFound as exc:
            raise DeployError(f"image {image} is gone: deploy again") from exc
        except docker.errors.APIError as exc:
            raise DeployError(f"cannot run the command: {exc.explanation or exc}") from exc
        except docker.errors.DockerException as exc:
            raise ServiceError(f"Docker is unavailable: {exc}") from exc
        finally:
            term.on_resize = None
            if container is not None:
                try:
                    container.remove(force=True)
                except docker.errors.DockerException:
                    pass

    def exec_attached(self, container_id: str, argv: list[str], term: Terminal) -> int:
        """``enter``: ``argv`` inside a running container, attached to ``term``."""
        api = self.client.api
        try:
            exec_id = api.exec_create(container_id, argv, stdin=True, tty=term.tty)["Id"]
            sock = api.exec_start(exec_id, socket=True, tty=term.tty)
            if term.size:
                self._resize(lambda height, width: api.exec_resize(
                    exec_id, height=height, width=width), *term.size)
            term.on_resize = lambda cols, rows: self._resize(
                lambda height, width: api.exec_resize(exec_id, height=height, width=width),
                cols, rows)
            stream(sock, term)
            code = api.exec_inspect(exec_id).get("ExitCode")
            return 1 if code is None else int(code)
        except docker.errors.NotFound as exc:
            raise DeployError("that container is gone: see ps") from exc
        except docker.errors.APIError as exc:
            raise DeployError(f"cannot enter the container: {exc.explanation or exc}") from exc
        except docker.errors.DockerException as exc:
            raise ServiceError(f"Docker is unavailable: {exc}") from exc
        finally:
            term.on_resize = None

    @staticmethod
    def _resize(resize: Callable[..., object], columns: int, rows: int) -> None:
        try:
            resize(height=rows, width=columns)
        except docker.errors.DockerException:
            pass  # the process may have ended already

    @staticmethod
    def _kill_quietly(container: Container) -> None:
        try:
            container.kill()
        except docker.errors.DockerException:
            pass

    def _remove_by_name(self, name: str) -> None:
        try:
            self.client.containers.get(name).remove(force=True)
        except docker.errors.NotFound:
            pass

    def list(self, app: str | None = None, release: int | None = None,
             all_states: bool = True) -> list[ContainerInfo]:
        """This instance's containers, optionally of one app and release.

        Built from Docker's container summaries (one API call). Only containers gitpaas
        made count: the name Docker holds must be the one gitpaas gives a container with
        those labels (``owned``), which a build's containers (random names) cannot forge.
        """
        filters = [f"{LABEL}.instance={self.instance}"]
        if app:
            filters.append(f"{LABEL}.app={app}")
        if release is not None:
            filters.append(f"{LABEL}.release={release}")
        try:
            found = self.client.api.containers(all=all_states, filters={"label": filters})
        except docker.errors.DockerException as exc:
            raise ServiceError(f"Docker is unavailable: {exc}") from exc
        infos = [self._summary_info(s) for s in found if owned(self.instance, s)]
        return sorted(infos, key=lambda i: (i.app, i.release, i.process, i.replica))

    def _summary_info(self, summary: Mapping[str, Any]) -> ContainerInfo:
        labels = summary.get("Labels") or {}
        port = next((int(p["PublicPort"]) for p in summary.get("Ports") or []
                     if p.get("PrivatePort") == PORT and p.get("PublicPort")
                     and p.get("Type", "tcp") == "tcp"), None)
        host, port = self._address(labels, summary.get("NetworkSettings") or {}, port)
        return ContainerInfo(
            id=summary["Id"], name=summary_name(summary), app=labels[f"{LABEL}.app"],
            release=int(labels[f"{LABEL}.release"]), process=labels[f"{LABEL}.process"],
            replica=int(labels[f"{LABEL}.replica"]), status=summary.get("State", ""),
            host=host, port=port, oneoff=labels.get(f"{LABEL}.oneoff", ""),
            # The listing has no StartedAt: the creation time stands in (ps inspects).
            started_at=created_at(summary))

    def get(self, container_id: str) -> ContainerInfo | None:
        try:
            return self._info(self.client.containers.get(container_id))
        except docker.errors.NotFound:
            return None

    def logs(self, container_id: str, tail: int = 50) -> str:
        try:
            raw = self.client.containers.get(container_id).logs(tail=tail, timestamps=False)
        except docker.errors.DockerException:
            return ""
        return raw.decode("utf-8", "replace")

    def follow_logs(self, container_id: str, since: int,
                    timestamps: bool = False) -> Follow[str]:
        """The container's lines from ``since`` (epoch seconds) on, as Docker sends them,
        until the container stops or the stream is closed (with ``timestamps``: each
        prefixed by Docker's RFC 3339 time)."""
        from ..drains import lines_of

        try:
            raw = self.client.api.logs(container_id, stream=True, follow=True, since=since,
                                       timestamps=timestamps)
        except docker.errors.DockerException as exc:
            raise ServiceError(f"Docker is unavailable: {exc}") from exc
        return Follow(raw, lines_of(raw))

    def follow_starts(self, app: str, since: int) -> Follow[str]:
        """The ids of ``app``'s containers that start from ``since`` (epoch seconds) on,
        from Docker's event stream (labels only: check them against ``list``)."""
        filters = {"type": ["container"], "event": ["start"],
                   "label": [f"{LABEL}.instance={self.instance}", f"{LABEL}.app={app}"]}
        try:
            raw = self.client.api.events(since=since, filters=filters, decode=True)
        except docker.errors.DockerException as exc:
            raise ServiceError(f"Docker is unavailable: {exc}") from exc
        return Follow(raw, (str(event.get("id", "")) for event in raw))

    def timed_logs(self, container_id: str, tail: int | None = None,
                   since: int | None = None) -> str:
        """Log lines prefixed by Docker's RFC 3339 timestamps ('' if the container is gone)."""
        kwargs: dict[str, Any] = {"timestamps": True, "tail": tail if tail is not None else "all"}
        if since:
            kwargs["since"] = since
        try:
            raw: bytes = self.client.containers.get(container_id).logs(**kwargs)
        except docker.errors.DockerException:
            return ""
        return raw.decode("utf-8", "replace")

    def _archive(self, info: ContainerInfo) -> None:
        if self.on_remove is None:
            return
        try:
            self.on_remove(info, self.timed_logs(info.id, tail=ARCHIVE_TAIL))
        except Exception:  # noqa: BLE001 - losing old log lines must not stop a removal
            log.exception("cannot keep the logs of %s", info.name)

    def remove(self, containers: Iterable[ContainerInfo], stop_timeout: int = 10) -> None:
        """Stop (SIGTERM, then SIGKILL after ``stop_timeout``) and remove containers."""
        for info in containers:
            try:
                c = self.client.containers.get(info.id)
                if c.status == "running":
                    c.stop(timeout=stop_timeout)
                self._archive(info)
                c.remove(force=True)
            except docker.errors.NotFound:
                continue
            except docker.errors.APIError:
                try:
                    self.client.containers.get(info.id).remove(force=True)
                except docker.errors.DockerException:
                    pass

