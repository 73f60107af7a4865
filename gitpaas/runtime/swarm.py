"""App processes as Docker Swarm services (``runtime: swarm``; docs/scaling.md).

Each process type of a release is one replicated service, named
``<instance>_<app>_v<release>_<process>`` (labels carry the same facts; a service is
gitpaas's only when its name is the one its labels give). Its replicas are the
formation's count; Swarm spreads them over the nodes and restarts those that die.

- Config: the app's environment is a Docker secret (``<service>_env``, mounted at
  ``/run/secrets/gitpaas-env``) that the service's entry point sources before it execs
  the process; neither the service's spec, its labels nor ``docker inspect`` show a value.
  Only ``DYNO`` (``web.{{.Task.Slot}}``) is in the spec.
- Web: port 5000 published in host mode on the node of each replica (a port Docker picks
  per task), so the edge reaches every replica at ``<node address>:<port>``, read from the
  task's port status. Host mode rather than an overlay network the edge joins: the edge is
  nginx on the host, not a container, and the routing mesh would add a second, hidden load
  balancer between the edge and the replicas (health checks and retries would not see
  which replica failed).
- Images: the host's engine builds them; ``Registry`` pushes them; nodes pull
  ``<registry_listen>/<instance>/<app>:v<N>`` with the registry's password, which each
  service carries from the manager (never in its spec as inspected).
- Confinement, as on one host: capabilities dropped but ``KEPT_CAPABILITIES``, the
  pids limit (``Limits.Pids``); no-new-privileges comes from each node's daemon.json
  (``NODE_DAEMON_CONFIG``): the 20.10 service API cannot ask for it. The entry point
  checks it (``NNP_CHECK``): a replica on a node without it exits before the app runs.
- One-off containers (release phase, predeploy, cron, ``run``) run on the host's engine,
  which holds every release image: ``local``.

A ``ContainerInfo`` here is one task: ``id`` the task id, ``replica`` its slot, ``host``
its node's address.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shlex
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import docker
import docker.errors
from docker.types import (
    ContainerSpec,
    DriverConfig,
    Placement,
    Resources,
    RestartPolicy,
    SecretReference,
    ServiceMode,
    TaskTemplate,
)
from docker.utils import parse_bytes

from ..errors import DeployError, ServiceError
from ..registry import Registry
from ..terminal import Terminal
from .docker import (
    ARCHIVE_TAIL,
    KEPT_CAPABILITIES,
    LABEL,
    PORT,
    ContainerInfo,
    DockerRuntime,
    Follow,
)
from .volumes import StorageMount

log = logging.getLogger(__name__)
ENV_SECRET_FILE = "gitpaas-env"
# A replica refuses to run on a node whose dockerd does not set no-new-privileges
# (NODE_DAEMON_CONFIG): shell builtins only, as the image may have nothing but sh.
NO_NNP_EXIT = 97
NNP_CHECK = ('nnp=; while read -r k v; do [ "$k" = NoNewPrivs: ] && nnp=$v; done'
             ' </proc/self/status; [ "$nnp" = 1 ] || { echo "gitpaas: this node runs'
             ' containers without no-new-privileges (docs/scaling.md)" >&2;'
             f' exit {NO_NNP_EXIT}; }}; ')
ENTRY = ["/bin/sh", "-c", f'{NNP_CHECK}. /run/secrets/{ENV_SECRET_FILE} && exec "$@"', "sh"]
NAME_MAX = 63
# What every node's dockerd needs in /etc/docker/daemon.json (``hosts:add`` prints it):
# Docker 20.10's service API (1.41) has no no-new-privileges (its ContainerSpec.Privileges
# holds only CredentialSpec and SELinuxContext; NoNewPrivileges came in a later API), so
# each node's daemon sets it on every container it makes.
NODE_DAEMON_CONFIG: dict[str, Any] = {"no-new-privileges": True}
START_TIMEOUT = 180.0  # seconds for every replica of a service to run (pulls included)
RUNNING = "running"
# Task states that will never run again.
ENDED = {"complete", "failed", "shutdown", "rejected", "orphaned", "remove"}


def service_name(instance: str, app: str, release: int, process: str) -> str:
    """``<instance>_<app>_v<release>_<process>``; Swarm allows 63 characters, so a longer
    one is ``<instance>_<app>_h<hash of release and process>`` (at most 20 + 30 + 13)."""
    name = f"{instance}_{app}_v{release}_{process}"
    if len(name) > NAME_MAX:
        digest = hashlib.sha256(f"{release}/{process}".encode()).hexdigest()[:10]
        name = f"{instance}_{app}_h{digest}"
    return name


def env_file(env: Mapping[str, str]) -> bytes:
    """``export K='v'`` lines for ``sh`` (the secret's content; never empty)."""
    lines = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items())
    return f"# gitpaas: the app's config\n{lines}".encode()


def task_status(state: str) -> str:
    """A task's state in the words of a container's (what health checks and ps read)."""
    if state == RUNNING:
        return "running"
    if state in ENDED:
        return "exited"
    return "created"


class SwarmRuntime:
    """Starts, lists and retires app processes as services of a swarm."""

    services = True  # the deployer and the reconciler work per process type

    def __init__(self, client: docker.DockerClient, local: DockerRuntime, registry: Registry,
                 instance: str, start_timeout: float = START_TIMEOUT,
                 stop_timeout: int = 10) -> None:
        self.client = client  # the swarm manager's engine
        self.local = local  # this host's engine: builds, one-offs, volumes
        self.registry = registry
        self.instance = instance
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout  # seconds between SIGTERM and SIGKILL
        self.on_remove = local.on_remove
        self.volumes = local.volumes
        self.sandbox = local.sandbox
        self._logged_in = False  # the manager client holds the registry's credentials

    # -- what the single-engine runtime does here -------------------------------------

    def _api(self) -> Any:
        """The manager's low-level client, untyped: types-docker's node spec type is
        narrower than what the API takes back from ``inspect_node``."""
        return self.client.api

    def network_name(self, app: str) -> str:
        return f"{self.instance}_{app}"

    def ensure_network(self, app: str) -> str:
        """The app's own overlay network (made on first use); returns its id. Replicas
        of one app reach each other on it; other apps' replicas are on theirs, and the
        nodes' ``docker_gwbridge`` (outbound traffic, published ports) forbids traffic
        between containers."""
        name = self.network_name(app)
        labels = {f"{LABEL}.instance": self.instance, f"{LABEL}.app": app}
        for net in self.client.api.networks(names=[name]):
            if net.get("Name") == name and (net.get("Labels") or {}) == labels:
                return net["Id"]
        created = self.client.api.create_network(name, driver="overlay", labels=labels,
                                                 check_duplicate=True)
        return created["Id"]

    def remove_network(self, app: str, timeout: float = 30.0) -> None:
        """``apps:destroy``, after the services: the app's networks and storage pin.
        The overlay network goes once the removed services' replicas let it go."""
        self.local.remove_network(app)
        try:
            self.unpin(app)
            deadline = time.monotonic() + timeout
            for net in self.client.api.networks(names=[self.network_name(app)]):
                if net.get("Name") != self.network_name(app):
                    continue
                while True:
                    try:
                        self.client.api.remove_network(net["Id"])
                        break
                    except docker.errors.NotFound:
                        break
                    except docker.errors.APIError:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.5)
        except docker.errors.DockerException as exc:
            raise ServiceError(f"the swarm manager is unavailable: {exc}") from exc

    def run_once(self, *args: Any, **kwargs: Any) -> int:
        """One-off containers run on this host's engine (it holds every release image)."""
        return self.local.run_once(*args, **kwargs)

    def run_attached(self, app: str, release: int, image: str, process: str,
                     env: Mapping[str, str], argv: list[str], term: Terminal,
                     **kwargs: Any) -> int:
        return self.local.run_attached(app, release, image, process, env, argv, term,
                                       **kwargs)

    def exec_attached(self, container_id: str, argv: list[str], term: Terminal) -> int:
        raise DeployError("enter is not available with the swarm runtime: use run")

    # -- services ------------------------------------------------------------------------

    def _labels(self, app: str, release: int, process: str) -> dict[str, str]:
        return {f"{LABEL}.instance": self.instance, f"{LABEL}.app": app,
                f"{LABEL}.release": str(release), f"{LABEL}.process": process}

    def _image_argv(self, image: str, command: str | None) -> list[str]:
        """What the replica runs after sourcing its config, as on one host: the image's
        entry point, then the Procfile's command (``sh -c``) or else the image's own."""
        try:
            config = self.local.client.images.get(image).attrs.get("Config") or {}
        except docker.errors.ImageNotFound as exc:
            raise DeployError(f"image {image} is gone") from exc
        argv = list(config.get("Entrypoint") or []) + (
            ["/bin/sh", "-c", command] if command else list(config.get("Cmd") or []))
        if not argv:
            raise DeployError(f"image {image} has no command: add a Procfile")
        return argv

    def publish(self, image: str) -> str:
        """The registry name of ``image``, pushed first when the registry lacks it (with
        the base image it was built from)."""
        if not self.registry.exists(image):
            self.registry.push(self.local.client, image)
            self.registry.push_base_of(self.local.client, image)
        return self.registry.ref(image)

    def _login(self) -> None:
        """Once per runtime: the manager's client gets the registry's password, which
        it sends with each service it creates (Swarm gives it to the nodes that pull;
        ``docker service inspect`` does not show it)."""
        if not self._logged_in:
            self.registry.login(self.client)
            self._logged_in = True

    def forget_image(self, image: str) -> None:
        """Delete a pruned release image from the registry."""
        self.registry.delete(image)

    def start_process(self, app: str, release: int, image: str, process: str, replicas: int,
                      env: Mapping[str, str], command: str | None = None, web: bool = False,
                      mem_limit: str | None = None, nano_cpus: int | None = None,
                      mounts: Sequence[StorageMount] | None = None,
                      constraints: Sequence[str] = ()) -> list[ContainerInfo]:
        """Create the service of one process type and wait until every replica runs;
        return them (their node address and published port for web)."""
        name = service_name(self.instance, app, release, process)
        labels = self._labels(app, release, process)
        argv = self._image_argv(image, command)
        constraints = list(constraints)
        try:
            if mounts:  # the app's volumes live on one node: its replicas run there
                self.storage_node(app, pin=True)
                constraints.append(f"node.labels.{self.pin_label(app)}==true")
            ref = self.publish(image)
            self._login()
            self._remove_service(name)  # a leftover of a failed deploy holds the name
            secret = self._make_secret(f"{name}_env", env, labels)
            spec = ContainerSpec(
                ref, command=ENTRY, args=argv, env={"DYNO": f"{process}.{{{{.Task.Slot}}}}"},
                hostname=f"{app}-{process}-{{{{.Task.Slot}}}}", labels=labels,
                mounts=[m.docker_mount() for m in mounts or []] or None,
                stop_grace_period=self.stop_timeout * 10**9, init=True,
                cap_drop=["ALL"], cap_add=list(KEPT_CAPABILITIES),
                secrets=[SecretReference(secret.id, secret.name, filename=ENV_SECRET_FILE,
                                         uid="0", gid="0", mode=0o444)])
            template = TaskTemplate(
                spec, resources=self._resources(mem_limit, nano_cpus),
                networks=[self.ensure_network(app)],
                restart_policy=RestartPolicy(condition="any", delay=10**9, max_attempts=0),
                placement=Placement(constraints=list(constraints)) if constraints else None,
                log_driver=DriverConfig("json-file", {"max-size": "10m", "max-file": "3"}))
            endpoint = {"Ports": [{"Protocol": "tcp", "TargetPort": PORT,
                                   "PublishMode": "host"}]} if web else None
            self.client.api.create_service(template, name=name, labels=labels,
                                           mode=ServiceMode("replicated", replicas=replicas),
                                           endpoint_spec=endpoint)
        except docker.errors.APIError as exc:
            raise DeployError(f"cannot start {process}: {exc.explanation or exc}") from exc
        except docker.errors.DockerException as exc:
            raise ServiceError(f"the swarm manager is unavailable: {exc}") from exc
        return self._wait_running(name, process, replicas, web)

    def _resources(self, mem_limit: str | None, nano_cpus: int | None) -> Resources | None:
        """The task's limits: memory, CPU and (as on one host) processes. docker-py's
        ``Resources`` has no pids field: ``Limits.Pids`` (API 1.41) goes in the dict."""
        limits: dict[str, Any] = {}
        if mem_limit:
            limits["mem_limit"] = parse_bytes(mem_limit)
        if nano_cpus:
            limits["cpu_limit"] = nano_cpus
        pids = self.sandbox.pids_limit
        if not limits and not pids:
            return None
        resources = Resources(**limits)
        if pids:
            resources.setdefault("Limits", {})["Pids"] = pids
        return resources

    def _make_secret(self, name: str, env: Mapping[str, str],
                     labels: dict[str, str]) -> Any:
        try:
            self.client.secrets.get(name).remove()
        except docker.errors.NotFound:
            pass
        return self.client.secrets.create(name=name, data=env_file(env), labels=labels)

    def _wait_running(self, name: str, process: str, replicas: int,
                      web: bool) -> list[ContainerInfo]:
        deadline = time.monotonic() + self.start_timeout
        last_error = ""
        seen: set[str] = set()  # tasks running at the previous poll
        while True:
            tasks = self._tasks([name])
            running = [t for t in tasks if t.status == RUNNING and (t.port or not web)]
            # Running at two polls in a row: a process that exits at once shows RUNNING
            # for a moment before its agent reports the exit.
            steady = [t for t in running if t.id in seen]
            seen = {t.id for t in running}
            if len({t.replica for t in steady}) >= replicas:
                by_slot = {t.replica: t for t in steady}
                return [by_slot[s] for s in sorted(by_slot)][:replicas]
            errors = [t for t in self._raw_tasks([name]) if t["Status"].get("Err")
                      and t["Status"].get("State") in ENDED]
            if errors:
                last_error = self._task_error(errors[-1])
            # Tasks that never ran (no such image, no node fits): Swarm would try for ever.
            if time.monotonic() > deadline or len(errors) >= max(3, 2 * replicas):
                self._remove_service(name)
                why = f": {last_error}" if last_error else ""
                raise DeployError(f"{process} did not start on the swarm{why}")
            time.sleep(0.3)

    def _task_error(self, task: Mapping[str, Any]) -> str:
        """Why a task ended, in words: its node's dockerd lacking no-new-privileges is
        said with the fix."""
        err = str(task["Status"].get("Err") or "")
        if f"exit ({NO_NNP_EXIT})" not in err:
            return err
        try:
            node = self.client.api.inspect_node(task.get("NodeID", ""))
            where = f"node {node['Description']['Hostname']}"
        except (docker.errors.DockerException, KeyError):
            where = "a node"
        return (f"{where} runs containers without no-new-privileges: add"
                f" {json.dumps(NODE_DAEMON_CONFIG)} to its /etc/docker/daemon.json and"
                " restart docker (hosts:add)")

    # -- storage ------------------------------------------------------------------------

    def pin_label(self, app: str) -> str:
        """The node label that marks the node holding ``app``'s storage volumes."""
        return f"gitpaas-storage-{self.instance}-{app}"

    def storage_node(self, app: str, pin: bool = False) -> str | None:
        """The hostname of the node holding ``app``'s storage; with ``pin``, choose one
        first if none does: the ready, active node holding the fewest apps' storage
        (then the first by name). Kept as a node label, in the swarm's own state, so an
        operator moves it with ``docker node update --label-rm/--label-add``."""
        label = self.pin_label(app)
        nodes = self.client.api.nodes()
        for node in nodes:
            if (node.get("Spec") or {}).get("Labels", {}).get(label) == "true":
                return node["Description"]["Hostname"]
        if not pin:
            return None
        ready = [n for n in nodes if n["Status"].get("State") == "ready"
                 and n["Spec"].get("Availability") == "active"]
        if not ready:
            raise DeployError("no ready node to keep the app's storage on")
        prefix = f"gitpaas-storage-{self.instance}-"

        def load(node: Mapping[str, Any]) -> tuple[int, str]:
            pins = [k for k in (node["Spec"].get("Labels") or {}) if k.startswith(prefix)]
            return len(pins), node["Description"]["Hostname"]

        chosen = min(ready, key=load)
        spec = dict(chosen["Spec"])
        spec["Labels"] = {**(spec.get("Labels") or {}), label: "true"}
        self._api().update_node(chosen["ID"], chosen["Version"]["Index"], spec)
        return chosen["Description"]["Hostname"]

    def storage_elsewhere(self, app: str) -> str | None:
        """The hostname of the node holding ``app``'s storage when that node is not this
        host's engine (whose volumes backups export); None when the app has no storage
        pin or its storage is here."""
        hostname = self.storage_node(app)
        if hostname is None:
            return None
        try:
            here = (self.local.client.info().get("Swarm") or {}).get("NodeID") or ""
            ids = [n["ID"] for n in self.client.api.nodes()
                   if (n.get("Description") or {}).get("Hostname") == hostname]
        except docker.errors.DockerException as exc:
            raise ServiceError(f"the swarm manager is unavailable: {exc}") from exc
        return None if here and here in ids else hostname

    def unpin(self, app: str) -> None:
        """Forget where ``app``'s storage lives (``apps:destroy``)."""
        label = self.pin_label(app)
        for node in self.client.api.nodes():
            labels = dict((node.get("Spec") or {}).get("Labels") or {})
            if label in labels:
                del labels[label]
                self._api().update_node(node["ID"], node["Version"]["Index"],
                                            dict(node["Spec"], Labels=labels))

    # -- listing --------------------------------------------------------------------------

    def _owned_services(self, app: str | None = None,
                        release: int | None = None) -> list[dict[str, Any]]:
        filters = [f"{LABEL}.instance={self.instance}"]
        if app:
            filters.append(f"{LABEL}.app={app}")
        if release is not None:
            filters.append(f"{LABEL}.release={release}")
        try:
            found = self.client.api.services(filters={"label": filters})
        except docker.errors.DockerException as exc:
            raise ServiceError(f"the swarm manager is unavailable: {exc}") from exc
        owned = []
        for service in found:
            spec = service.get("Spec") or {}
            labels = spec.get("Labels") or {}
            try:
                expected = service_name(self.instance, labels[f"{LABEL}.app"],
                                        int(labels[f"{LABEL}.release"]),
                                        labels[f"{LABEL}.process"])
            except (KeyError, ValueError):
                continue
            if spec.get("Name") == expected:
                owned.append(service)
        return owned

    def _raw_tasks(self, services: Iterable[str]) -> list[dict[str, Any]]:
        names = list(services)
        if not names:
            return []
        try:
            try:
                return self.client.api.tasks(filters={"service": names})
            except docker.errors.NotFound:
                # A service removed since it was listed (a retirement): ask per service.
                found = []
                for name in names:
                    try:
                        found += self.client.api.tasks(filters={"service": [name]})
                    except docker.errors.NotFound:
                        continue
                return found
        except docker.errors.DockerException as exc:
            raise ServiceError(f"the swarm manager is unavailable: {exc}") from exc

    def _node_addresses(self) -> dict[str, str]:
        try:
            return {n["ID"]: (n.get("Status") or {}).get("Addr", "")
                    for n in self.client.api.nodes()}
        except docker.errors.DockerException as exc:
            raise ServiceError(f"the swarm manager is unavailable: {exc}") from exc

    def _tasks(self, services: Iterable[str], current_only: bool = True
               ) -> list[ContainerInfo]:
        """The services' tasks Swarm wants running (``current_only``), as containers."""
        raw = self._raw_tasks(services)
        if not raw:
            return []
        nodes = self._node_addresses()
        infos = [self._task_info(t, nodes) for t in raw
                 if not current_only or t.get("DesiredState") == RUNNING]
        return [i for i in infos if i is not None]

    def _task_info(self, task: Mapping[str, Any], nodes: Mapping[str, str]) -> ContainerInfo | None:
        spec = ((task.get("Spec") or {}).get("ContainerSpec") or {})
        labels = spec.get("Labels") or {}
        if labels.get(f"{LABEL}.instance") != self.instance:
            return None
        status = task.get("Status") or {}
        port = next((int(p["PublishedPort"]) for p in
                     (status.get("PortStatus") or {}).get("Ports") or []
                     if p.get("TargetPort") == PORT and p.get("PublishedPort")), None)
        app, process = labels.get(f"{LABEL}.app", ""), labels.get(f"{LABEL}.process", "")
        release = int(labels.get(f"{LABEL}.release", "0"))
        slot = int(task.get("Slot") or 0)
        return ContainerInfo(
            id=task["ID"], name=f"{service_name(self.instance, app, release, process)}.{slot}",
            app=app, release=release, process=process, replica=slot,
            status=task_status(status.get("State", "")),
            host=nodes.get(task.get("NodeID", ""), ""), port=port,
            started_at=status.get("Timestamp", ""))

    def list(self, app: str | None = None, release: int | None = None,
             all_states: bool = True) -> list[ContainerInfo]:
        """The tasks Swarm wants running of this instance's services (optionally of one
        app and release), one ``ContainerInfo`` each."""
        services = [s["Spec"]["Name"] for s in self._owned_services(app, release)]
        infos = self._tasks(services)
        if not all_states:
            infos = [i for i in infos if i.status == "running"]
        return sorted(infos, key=lambda i: (i.app, i.release, i.process, i.replica))

    def desired_services(self, app: str) -> dict[str, tuple[int, int]]:
        """``{service name: (release, replicas)}`` of the app's services."""
        found = {}
        for service in self._owned_services(app):
            spec = service["Spec"]
            replicas = ((spec.get("Mode") or {}).get("Replicated") or {}).get("Replicas", 0)
            found[spec["Name"]] = (int(spec["Labels"][f"{LABEL}.release"]), int(replicas))
        return found

    def get(self, container_id: str) -> ContainerInfo | None:
        """One task by id (a shut-down task reads as ``exited``)."""
        try:
            task = self.client.api.inspect_task(container_id)
        except docker.errors.NotFound:
            return None
        except docker.errors.DockerException as exc:
            raise ServiceError(f"the swarm manager is unavailable: {exc}") from exc
        info = self._task_info(task, self._node_addresses())
        if info is not None and task.get("DesiredState") != RUNNING:
            info = ContainerInfo(**{**info.__dict__, "status": "exited"})
        return info

    def _task_logs(self, task_id: str, **params: Any) -> bytes:
        api = self.client.api
        query = {"stdout": 1, "stderr": 1, **params}
        try:
            # docker-py has no call for /tasks/{id}/logs: its own private helpers
            resp = api._get(api._url("/tasks/{0}/logs", task_id),  # type: ignore[attr-defined]
                            params=query, stream=False)
            api._raise_for_status(resp)  # type: ignore[attr-defined]
            return b"".join(api._multiplexed_buffer_helper(resp))  # type: ignore[attr-defined]
        except docker.errors.DockerException:
            return b""

    def logs(self, container_id: str, tail: int = 50) -> str:
        return self._task_logs(container_id, tail=tail).decode("utf-8", "replace")

    def timed_logs(self, container_id: str, tail: int | None = None,
                   since: int | None = None) -> str:
        params: dict[str, Any] = {"timestamps": 1, "tail": tail if tail is not None else "all"}
        if since:
            params["since"] = since
        return self._task_logs(container_id, **params).decode("utf-8", "replace")

    def follow_logs(self, container_id: str, since: int,
                    timestamps: bool = False) -> Follow[str]:
        """The task's lines from ``since`` (epoch seconds) on, as they come (the manager
        fetches them from the task's node); ``close`` ends the stream."""
        from ..drains import lines_of

        api = self.client.api
        params = {"stdout": 1, "stderr": 1, "follow": 1, "since": since,
                  "timestamps": int(timestamps)}
        try:
            resp = api._get(  # type: ignore[attr-defined]
                api._url("/tasks/{0}/logs", container_id),  # type: ignore[attr-defined]
                params=params, stream=True)
            api._raise_for_status(resp)  # type: ignore[attr-defined]
        except docker.errors.DockerException as exc:
            raise ServiceError(f"the swarm manager is unavailable: {exc}") from exc
        chunks = api._multiplexed_response_stream_helper(resp)  # type: ignore[attr-defined]
        return Follow(resp, lines_of(chunks))

    def follow_starts(self, app: str, since: int) -> Follow[str]:
        """The ids of ``app``'s tasks that start from now on (polled from the manager
        once a second; Swarm has no cluster-wide start events); ``close`` ends it."""
        stop = threading.Event()

        class Stopper:
            def close(self) -> None:
                stop.set()

        def starts() -> Iterator[str]:
            seen = {t.id for t in self.list(app)}
            while not stop.wait(1.0):
                for task in self.list(app):
                    if task.id not in seen and task.status == "running":
                        seen.add(task.id)
                        yield task.id

        return Follow(Stopper(), starts())

    # -- removal --------------------------------------------------------------------------

    def _archive(self, info: ContainerInfo) -> None:
        """A removed replica's last lines to the log archive (``logs`` after a deploy)."""
        if self.on_remove is None:
            return
        try:
            self.on_remove(info, self.timed_logs(info.id, tail=ARCHIVE_TAIL))
        except Exception:  # noqa: BLE001 - losing old log lines must not stop a removal
            log.exception("cannot keep the logs of %s", info.name)

    def _remove_service(self, name: str) -> None:
        try:
            self.client.api.remove_service(name)
        except docker.errors.NotFound:
            pass
        try:
            self.client.secrets.get(f"{name}_env").remove()
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError:
            pass  # still referenced while Swarm removes the service: removed next time

    def remove(self, containers: Iterable[ContainerInfo], stop_timeout: int = 10) -> None:
        """Remove the services these tasks belong to (Swarm sends SIGTERM, then SIGKILL
        after the service's grace period)."""
        containers = list(containers)
        names = {service_name(self.instance, c.app, c.release, c.process)
                 for c in containers}
        for info in containers:
            self._archive(info)
        try:
            for name in sorted(names):
                self._remove_service(name)
        except docker.errors.DockerException as exc:
            raise ServiceError(f"the swarm manager is unavailable: {exc}") from exc

    def remove_service(self, name: str) -> None:
        """Remove one service of this instance (a process type scaled to 0, another
        release's), by the name ``desired_services`` gave."""
        try:
            self._remove_service(name)
        except docker.errors.DockerException as exc:
            raise ServiceError(f"the swarm manager is unavailable: {exc}") from exc

    def remove_unused_secrets(self, min_age: float = 600.0) -> None:
        """Secrets of services that are gone (a removal raced the service's shutdown, a
        creation failed half-way), once older than ``min_age`` seconds: a deploy makes
        the secret just before its service."""
        from ..applogs import epoch_seconds, normalize_timestamp

        try:
            live = {s["Spec"]["Name"] for s in self._owned_services()}
            for secret in self.client.secrets.list(
                    filters={"label": f"{LABEL}.instance={self.instance}"}):
                stamp = normalize_timestamp(secret.attrs.get("CreatedAt") or "")
                if stamp and time.time() - epoch_seconds(stamp) < min_age:
                    continue
                if secret.name.removesuffix("_env") not in live:
                    try:
                        secret.remove()
                    except docker.errors.APIError:
                        pass
        except docker.errors.DockerException as exc:
            raise ServiceError(f"the swarm manager is unavailable: {exc}") from exc


def connect(url: str) -> docker.DockerClient:
    """A client of the swarm manager's Docker API (``""``: this host's engine)."""
    try:
        client = docker.DockerClient(base_url=url, timeout=300) if url else \
            docker.from_env(timeout=300)
    except docker.errors.DockerException as exc:
        raise ServiceError(f"the swarm manager is unavailable: {exc}") from exc
    return client



class Nodes:
    """The swarm's nodes, for ``hosts``, ``hosts:add`` and ``hosts:drain``."""

    def __init__(self, runtime: SwarmRuntime) -> None:
        self.runtime = runtime
        self.client = runtime.client

    def list(self) -> list[dict[str, Any]]:
        """Each node: hostname, id, role, state, availability, address, and the replicas
        of this instance's apps it runs (``app.process`` counts)."""
        try:
            nodes = self.client.api.nodes()
        except docker.errors.DockerException as exc:
            raise ServiceError(f"the swarm manager is unavailable: {exc}") from exc
        running: dict[str, dict[str, int]] = {}
        for task in self.runtime.list():
            if task.status == "running":
                key = f"{task.app}.{task.process}"
                per_node = running.setdefault(task.host, {})
                per_node[key] = per_node.get(key, 0) + 1
        rows = []
        for node in nodes:
            spec, status = node.get("Spec") or {}, node.get("Status") or {}
            address = status.get("Addr", "")
            rows.append({"hostname": (node.get("Description") or {}).get("Hostname", ""),
                         "id": node["ID"], "role": spec.get("Role", ""),
                         "state": status.get("State", ""),
                         "availability": spec.get("Availability", ""),
                         "address": address, "runs": running.get(address, {})})
        return sorted(rows, key=lambda r: (r["role"] != "manager", r["hostname"]))

    def find(self, name: str) -> dict[str, Any]:
        """The node whose hostname or id is ``name``."""
        matches = [n for n in self.list() if name in (n["hostname"], n["id"])]
        if len(matches) != 1:
            from ..errors import NotFound

            known = ", ".join(n["hostname"] for n in self.list())
            raise NotFound(f"no single node named {name!r} (nodes: {known})")
        return matches[0]

    def set_availability(self, name: str, availability: str) -> dict[str, Any]:
        """``drain`` (Swarm moves its replicas to other nodes) or ``active``."""
        node = self.find(name)
        try:
            inspected = self.client.api.inspect_node(node["id"])
            spec = dict(inspected["Spec"], Availability=availability)
            self.runtime._api().update_node(node["id"], inspected["Version"]["Index"], spec)
        except docker.errors.DockerException as exc:
            raise ServiceError(f"cannot update node {name}: {exc}") from exc
        return node

    def join_command(self) -> tuple[str, str]:
        """``docker swarm join ...`` for a new worker, and the manager's address."""
        try:
            attrs = self.client.api.inspect_swarm()
            info = self.client.info()
        except docker.errors.DockerException as exc:
            raise ServiceError(f"the swarm manager is unavailable: {exc}") from exc
        token = attrs["JoinTokens"]["Worker"]
        managers = (info.get("Swarm") or {}).get("RemoteManagers") or []
        address = managers[0]["Addr"] if managers else ""
        return f"docker swarm join --token {token} {address}", address
