"""A real multi-node Docker Swarm on one machine, for the swarm runtime's tests.

Each node is a container of ``gitpaas-test/swarm-node:<recipe hash>`` (``tests/images/
swarm-node``, built offline with mmdebstrap like the base images and kept between runs)
running Debian's ``dockerd``, its ``/var/lib/docker`` on a volume (overlay2 inside works
there: the volume is a plain directory of the host's file system), on a bridge network
the test creates. The first node is the swarm manager; the others join it. The host's own
engine never joins the swarm: other tests share it.

The node containers are not ``--privileged``: on hosts whose capability bounding set lacks
``CAP_SYS_RESOURCE`` (this CI's), ``--privileged`` cannot start at all. They get every
capability the host has, no seccomp or AppArmor profile, writable ``/proc`` and ``/sys``
and a private cgroup namespace (the node's entry script mounts the cgroup hierarchies
again, read-write). Each node's dockerd reads the ``/etc/docker/daemon.json`` that
``hosts:add`` prints (``NODE_DAEMON_CONFIG``: no-new-privileges).
"""

from __future__ import annotations

import contextlib
import io
import json
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from gitpaas.runtime.swarm import NODE_DAEMON_CONFIG
from tests.conftest import unique

IMAGES_DIR = Path(__file__).resolve().parent / "images"
NODE_RECIPE = "swarm-node"
REPOSITORY = "gitpaas-test"
API_PORT = 2375


def node_image(docker_client) -> str:
    """The node image, built when its recipe's content tag is missing."""
    from gitpaas import images
    from gitpaas.settings import Settings

    images.build_images(Settings(), [NODE_RECIPE], images_dir=IMAGES_DIR,
                        repository=REPOSITORY, progress=lambda _: None, client=docker_client)
    return images.recipe_image_name(images.load_recipe(NODE_RECIPE, IMAGES_DIR), REPOSITORY)


@dataclass
class Node:
    """One node container: its name, hostname, address and Docker API client."""

    name: str
    hostname: str
    ip: str
    container_id: str
    client: object = None

    @property
    def docker_url(self) -> str:
        return f"tcp://{self.ip}:{API_PORT}"


@dataclass
class Cluster:
    """The nodes (``nodes[0]`` is the manager) and the network they share."""

    prefix: str
    network: str
    subnet: str
    gateway: str
    nodes: list[Node] = field(default_factory=list)

    @property
    def manager(self) -> Node:
        return self.nodes[0]

    def trust_ca(self, registry: str, ca_pem: bytes) -> None:
        """Install ``ca_pem`` as the CA of registry ``host:port`` on every node (Docker
        reads ``/etc/docker/certs.d`` at each pull: no restart)."""
        for node in self.nodes:
            put_file(node, f"/etc/docker/certs.d/{registry}/ca.crt", ca_pem)


def put_file(node: Node, path: str, data: bytes, docker_client=None) -> None:
    """Write ``data`` at ``path`` in the node container (parents made)."""
    import docker

    client = docker_client or docker.from_env()
    buf = io.BytesIO()
    parts = Path(path).parts[1:]
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for i in range(1, len(parts)):
            info = tarfile.TarInfo("/".join(parts[:i]))
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        info = tarfile.TarInfo("/".join(parts))
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))
    client.api.put_archive(node.container_id, "/", buf.getvalue())


def _start_node(docker_client, image: str, prefix: str, network: str, index: int,
                daemon_config: dict) -> Node:
    api = docker_client.api
    name = f"{prefix}-node{index}"
    volume = docker_client.volumes.create(name, labels={"gitpaas-test.swarm": prefix})
    host_config = api.create_host_config(
        cap_add=["ALL"], cap_drop=["SYS_RESOURCE"],
        security_opt=["seccomp=unconfined", "apparmor=unconfined"],
        binds={volume.name: {"bind": "/var/lib/docker", "mode": "rw"}},
        network_mode=network, init=False)
    # what the CLI's --cgroupns=private and --security-opt systempaths=unconfined send
    host_config.update(CgroupnsMode="private", MaskedPaths=[], ReadonlyPaths=[])
    created = api.create_container(image, name=name, hostname=f"node{index}",
                                   host_config=host_config,
                                   labels={"gitpaas-test.swarm": prefix})
    node = Node(name=name, hostname=f"node{index}", ip="", container_id=created["Id"])
    # the daemon.json ``hosts:add`` tells an operator to write (no-new-privileges)
    put_file(node, "/etc/docker/daemon.json", json.dumps(daemon_config).encode(),
             docker_client)
    api.start(created["Id"])
    attrs = api.inspect_container(created["Id"])
    node.ip = attrs["NetworkSettings"]["Networks"][network]["IPAddress"]
    return node


def _wait_api(node: Node, docker_client, timeout: float = 90) -> None:
    import docker

    deadline = time.monotonic() + timeout
    while True:
        try:
            client = docker.DockerClient(base_url=node.docker_url, timeout=120)
            client.ping()
            node.client = client
            return
        except Exception:  # noqa: BLE001 - not up yet
            status = docker_client.api.inspect_container(node.container_id)["State"]
            if not status.get("Running") or time.monotonic() > deadline:
                logs = docker_client.api.logs(node.container_id, tail=20).decode(
                    "utf-8", "replace")
                raise RuntimeError(f"node {node.name}'s dockerd did not start:\n{logs}")
            time.sleep(0.3)


@contextlib.contextmanager
def swarm_cluster(docker_client, size: int = 3,
                  daemon_config: dict | None = None) -> Iterator[Cluster]:
    """``size`` node containers on a new bridge, in one swarm; all removed afterwards.
    Their dockerd reads ``daemon_config`` (default: what ``hosts:add`` prints)."""
    daemon_config = NODE_DAEMON_CONFIG if daemon_config is None else daemon_config
    image = node_image(docker_client)
    prefix = unique("gpsw")
    net = docker_client.networks.create(prefix, driver="bridge",
                                        labels={"gitpaas-test.swarm": prefix})
    cluster = None
    try:
        net.reload()
        ipam = net.attrs["IPAM"]["Config"][0]
        cluster = Cluster(prefix=prefix, network=prefix, subnet=ipam["Subnet"],
                          gateway=ipam["Gateway"])
        for index in range(1, size + 1):
            cluster.nodes.append(_start_node(docker_client, image, prefix, prefix, index,
                                             daemon_config))
        for node in cluster.nodes:
            _wait_api(node, docker_client)
        manager = cluster.manager
        manager.client.swarm.init(advertise_addr=manager.ip,
                                  listen_addr=f"{manager.ip}:2377")
        manager.client.swarm.reload()
        token = manager.client.swarm.attrs["JoinTokens"]["Worker"]
        for node in cluster.nodes[1:]:
            node.client.swarm.join(remote_addrs=[f"{manager.ip}:2377"], join_token=token,
                                   advertise_addr=node.ip, listen_addr=f"{node.ip}:2377")
        _wait_ready(manager, size)
        yield cluster
    finally:
        remove_cluster(docker_client, prefix, cluster)


def _wait_ready(manager: Node, size: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        nodes = manager.client.nodes.list()
        ready = [n for n in nodes if n.attrs["Status"]["State"] == "ready"]
        if len(ready) == size:
            return
        time.sleep(0.3)
    raise RuntimeError(f"the swarm has not {size} ready nodes")


def remove_cluster(docker_client, prefix: str, cluster: Cluster | None) -> None:
    """Remove the node containers, their volumes and the network (what the test made)."""
    label = f"gitpaas-test.swarm={prefix}"
    for node in cluster.nodes if cluster else []:
        if node.client is not None:
            with contextlib.suppress(Exception):
                node.client.close()
    for c in docker_client.containers.list(all=True, filters={"label": label}):
        with contextlib.suppress(Exception):
            c.remove(force=True, v=True)
    for v in docker_client.volumes.list(filters={"label": label}):
        with contextlib.suppress(Exception):
            v.remove(force=True)
    for n in docker_client.networks.list(filters={"label": label}):
        with contextlib.suppress(Exception):
            n.remove()
