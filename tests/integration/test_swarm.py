"""The swarm runtime against a real three-node swarm (node containers, tests/swarmkit.py)
and the registry gitpaas runs: images built on the host run on nodes that never built
them, one service per process type, config never in the service's spec."""

from __future__ import annotations

import http.client
import json
import shutil
from pathlib import Path

import docker.errors
import pytest

from gitpaas.registry import RegistryFiles, RegistryProcess
from gitpaas.runtime import DockerRuntime
from gitpaas.runtime.docker import KEPT_CAPABILITIES, Sandbox
from gitpaas.runtime.swarm import SwarmRuntime, service_name
from gitpaas.settings import Settings
from tests.conftest import unique
from tests.harness import free_port
from tests.swarmkit import swarm_cluster

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]
PIDS_LIMIT = 40
COMMAND = "echo \"$DYNO $GREETING\" > /www/index.html && exec httpd -f -p 5000 -h /www"


@pytest.fixture(scope="module")
def cluster(docker_client):
    with swarm_cluster(docker_client, 3) as made:
        yield made


@pytest.fixture(scope="module")
def registry(cluster, tmp_path_factory):
    """gitpaas' registry on the test bridge's gateway, trusted by the host and nodes."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("reg"), instance=unique("t"),
                        registry_listen=f"{cluster.gateway}:{free_port()}")
    files = RegistryFiles(settings)
    process = RegistryProcess(files)
    process.start()
    host_dir = files.trust_on_host()
    cluster.trust_ca(settings.registry_listen, files.ca_cert.read_bytes())
    try:
        yield settings
    finally:
        process.stop()
        shutil.rmtree(host_dir, ignore_errors=True)


@pytest.fixture
def swarm(cluster, registry, docker_client, busybox_image):
    """A SwarmRuntime of a fresh instance, and an app image built on the host only."""
    from gitpaas.registry import Registry

    instance = unique("t")
    settings = Settings(data_dir=registry.data_dir, instance=instance,
                        registry_listen=registry.registry_listen)
    image = f"{instance}/shop:v1"
    repo, tag = image.split(":")
    docker_client.images.get(busybox_image).tag(repo, tag)
    local = DockerRuntime(docker_client, instance, sandbox=Sandbox(pids_limit=PIDS_LIMIT))
    runtime = SwarmRuntime(cluster.manager.client, local, Registry(settings), instance)
    try:
        yield runtime, image
    finally:
        runtime.remove(runtime.list())
        runtime.remove_unused_secrets(min_age=0)
        for app in ("shop", "blog"):
            runtime.remove_network(app)
        docker_client.images.remove(image, force=True)


def get(host: str, port: int) -> tuple[int, str]:
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("GET", "/")
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def test_three_nodes_one_manager(cluster):
    nodes = cluster.manager.client.nodes.list()
    assert sorted(n.attrs["Description"]["Hostname"] for n in nodes) == [
        "node1", "node2", "node3"]
    managers = [n for n in nodes if n.attrs["Spec"]["Role"] == "manager"]
    assert [m.attrs["Description"]["Hostname"] for m in managers] == ["node1"]
    assert {n.attrs["Status"]["Addr"] for n in nodes} == {n.ip for n in cluster.nodes}
    assert all(n.client.info()["Driver"] == "overlay2" for n in cluster.nodes)


def test_web_three_replicas_spread_over_the_nodes_each_answering(swarm, cluster):
    runtime, image = swarm
    for node in cluster.nodes:  # no node ever built or pulled it
        assert not node.client.images.list(name=f"*/{image.split(':')[0]}")
    started = runtime.start_process("shop", 1, image, "web", 3,
                                    {"GREETING": "hello 'there'", "PORT": "5000"},
                                    COMMAND, web=True, mem_limit="64m")
    assert sorted(c.replica for c in started) == [1, 2, 3]
    assert {c.host for c in started} == {n.ip for n in cluster.nodes}
    answers = {get(c.host, c.port) for c in started}
    assert answers == {(200, f"web.{i} hello 'there'\n") for i in (1, 2, 3)}
    assert sorted((c.process, c.replica, c.status) for c in runtime.list("shop")) == [
        ("web", 1, "running"), ("web", 2, "running"), ("web", 3, "running")]
    assert runtime.get(started[0].id).port == started[0].port


def test_config_is_in_a_secret_never_in_the_service(swarm, cluster):
    runtime, image = swarm
    runtime.start_process("shop", 2, image, "worker", 1,
                          {"SECRET_TOKEN": "s3cr3t-value"}, "sleep 600")
    name = service_name(runtime.instance, "shop", 2, "worker")
    spec = cluster.manager.client.api.inspect_service(name)
    text = json.dumps(spec)
    assert "s3cr3t-value" not in text
    assert "SECRET_TOKEN" not in text
    secret = cluster.manager.client.secrets.get(f"{name}_env")
    assert "s3cr3t-value" not in json.dumps(secret.attrs)
    limits = spec["Spec"]["TaskTemplate"]
    assert limits["RestartPolicy"]["Condition"] == "any"
    assert "ALL" in limits["ContainerSpec"]["CapabilityDrop"]


def test_removal_takes_the_service_and_its_secret(swarm, cluster):
    runtime, image = swarm
    started = runtime.start_process("shop", 3, image, "web", 1, {}, COMMAND, web=True)
    runtime.remove(started)
    assert runtime.list("shop") == []
    name = service_name(runtime.instance, "shop", 3, "web")
    assert not cluster.manager.client.secrets.list(filters={"name": f"{name}_env"})


def test_a_pruned_image_is_deleted_from_the_registry(swarm):
    runtime, image = swarm
    runtime.publish(image)
    assert runtime.registry.exists(image)
    runtime.forget_image(image)
    assert not runtime.registry.exists(image)


def test_the_registry_speaks_tls_only_with_our_ca(registry):
    import requests

    files = RegistryFiles(registry)
    assert requests.get(f"https://{registry.registry_listen}/v2/", timeout=5,
                        verify=str(files.ca_cert),
                        auth=files.credentials()).status_code == 200
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"https://{registry.registry_listen}/v2/", timeout=5)
    assert Path(files.tls / "ca.key").stat().st_mode & 0o077 == 0


def test_the_base_image_goes_to_the_registry_with_the_first_app_image(swarm, docker_client):
    import io

    from gitpaas import images

    runtime, _ = swarm
    images.build_images(Settings(), ["static"], progress=lambda _: None, client=docker_client)
    base = images.recipe_image_name(images.load_recipe("static"))
    app = f"{runtime.instance}/site:v1"
    dockerfile = f'FROM {base}\nCMD ["httpd", "-f", "-p", "5000"]\n'.encode()
    docker_client.images.build(fileobj=io.BytesIO(dockerfile), tag=app, rm=True)
    try:
        assert runtime.publish(app) == runtime.registry.ref(app)
        assert runtime.registry.exists(app) and runtime.registry.exists(base)
    finally:
        runtime.forget_image(app)
        runtime.registry.delete(base)
        docker_client.images.remove(app, force=True)


def test_the_registry_dies_with_the_process_that_started_it(tmp_path, cluster):
    import os
    import signal
    import subprocess
    import sys
    import time

    listen = f"{cluster.gateway}:{free_port()}"
    script = ("from pathlib import Path\n"
              "from gitpaas.registry import RegistryFiles, RegistryProcess\n"
              "from gitpaas.settings import Settings\n"
              f"s = Settings(data_dir=Path({str(tmp_path)!r}), registry_listen={listen!r})\n"
              "p = RegistryProcess(RegistryFiles(s)); p.start()\n"
              "print(p.proc.pid, flush=True)\n"
              "import time; time.sleep(600)\n")
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        try:  # a zombie of init counts as gone
            if Path(f"/proc/{child}/stat").read_text().split()[2] == "Z":
                break
        except FileNotFoundError:
            break
        time.sleep(0.1)
    else:
        os.kill(child, signal.SIGKILL)
        pytest.fail("the registry outlived gitpaas serve")


def overlay_address(runtime, task_id: str) -> str:
    task = runtime.client.api.inspect_task(task_id)
    return task["NetworksAttachments"][0]["Addresses"][0].split("/")[0]


def exec_in_task(cluster, info, argv: list[str]) -> int:
    node = next(n for n in cluster.nodes if n.ip == info.host)
    container = node.client.containers.list(
        filters={"label": f"com.docker.swarm.task.id={info.id}"})[0]
    return container.exec_run(argv).exit_code, container


def test_apps_are_on_overlay_networks_of_their_own(swarm, cluster):
    runtime, image = swarm
    shop = runtime.start_process("shop", 1, image, "web", 2, {}, COMMAND, web=True)
    node = next(n for n in cluster.nodes if n.ip == shop[0].host)  # both on one node
    blog = runtime.start_process("blog", 1, image, "web", 1, {}, COMMAND, web=True,
                                 constraints=[f"node.hostname=={node.hostname}"])
    assert blog[0].host == shop[0].host
    nets = {n["Name"]: n for n in cluster.manager.client.api.networks(
        filters={"driver": "overlay"})}
    assert {f"{runtime.instance}_shop", f"{runtime.instance}_blog"} <= set(nets)
    mate = overlay_address(runtime, shop[1].id)
    stranger = overlay_address(runtime, blog[0].id)
    fetch = ["timeout", "5", "wget", "-O", "-"]  # (busybox wget -q, -T: SIGSEGV here)
    code, _ = exec_in_task(cluster, shop[0], [*fetch, f"http://{mate}:5000/"])
    assert code == 0  # one app's replicas reach each other
    code, _ = exec_in_task(cluster, shop[0], [*fetch, f"http://{stranger}:5000/"])
    assert code != 0  # not another app's
    _, blog_container = exec_in_task(cluster, blog[0], ["true"])
    # eth1: the node's docker_gwbridge (outbound traffic and the published port)
    shown = blog_container.exec_run(["ip", "-4", "-o", "addr", "show", "eth1"]).output
    gw = shown.decode().split("inet ")[1].split("/")[0]
    code, _ = exec_in_task(cluster, shop[0], [*fetch, f"http://{gw}:5000/"])
    assert code != 0  # nor through the nodes' gateway bridge


def test_a_process_that_cannot_run_fails_the_start_at_once(swarm):
    import time

    from gitpaas.errors import DeployError

    runtime, image = swarm
    started = time.monotonic()
    with pytest.raises(DeployError, match="did not start on the swarm: .*exit"):
        runtime.start_process("shop", 9, image, "web", 2, {}, "exit 3", web=True)
    assert time.monotonic() - started < 60
    assert runtime.list("shop") == []


def test_a_tasks_lines_are_followed_as_they_come(swarm):
    import threading
    import time

    runtime, image = swarm
    started = runtime.start_process(
        "shop", 4, image, "worker", 1, {},
        "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.3; done")
    lines: list[str] = []

    def follow() -> None:
        for line in runtime.follow_logs(started[0].id, int(time.time()) - 60):
            lines.append(line)
            if len(lines) >= 5:
                return

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    reader.join(60)
    assert [line.strip() for line in lines[:5]] == [f"tick {i}" for i in range(5)]
    assert "tick 0" in runtime.logs(started[0].id)


def test_a_removed_replicas_last_lines_go_to_the_archive(swarm):
    import time

    runtime, image = swarm
    kept: list[tuple[str, str]] = []
    runtime.on_remove = lambda info, raw: kept.append((info.name, raw))
    started = runtime.start_process("shop", 5, image, "worker", 1, {},
                                    "echo goodbye-line; exec sleep 600")
    deadline = time.monotonic() + 30
    while "goodbye-line" not in runtime.logs(started[0].id) and time.monotonic() < deadline:
        time.sleep(0.3)
    runtime.remove(started)
    assert [name for name, _ in kept] == [started[0].name]
    assert "goodbye-line" in kept[0][1] and kept[0][1][:4].isdigit()  # timestamped


def task_container(cluster, info):
    """The container of task ``info`` on its node (the node's own engine)."""
    node = next(n for n in cluster.nodes if n.ip == info.host)
    return node.client.containers.list(
        filters={"label": f"com.docker.swarm.task.id={info.id}"})[0]


def test_a_replica_is_confined_as_on_one_host(swarm, cluster):
    """Capabilities dropped (the kept list only), a pids limit and no-new-privileges
    (the nodes' daemon.json), seen on the task's container on its node and from inside."""
    runtime, image = swarm
    started = runtime.start_process("shop", 6, image, "worker", 1, {}, "exec sleep 600")
    container = task_container(cluster, started[0])
    host = container.attrs["HostConfig"]
    assert host["CapDrop"] == ["ALL"]
    assert sorted(c.removeprefix("CAP_") for c in host["CapAdd"]) == sorted(KEPT_CAPABILITIES)
    assert host["PidsLimit"] == PIDS_LIMIT
    status = container.exec_run(["cat", "/proc/1/status"]).output.decode()
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    assert fields["NoNewPrivs"].strip() == "1"
    caps = int(fields["CapEff"], 16)
    assert caps & (1 << 27) == 0 and caps & (1 << 13) == 0  # CAP_MKNOD, CAP_NET_RAW
    made = container.exec_run(["mknod", "/tmp/null2", "c", "1", "3"])
    assert made.exit_code != 0  # no MKNOD
    # forking past the limit fails inside the container
    forks = container.exec_run(["/bin/sh", "-c", f"for i in $(seq {PIDS_LIMIT + 10}); do "
                                "sleep 30 & done 2>&1; echo spawned; kill $(jobs -p) 2>/dev/null"])
    text = forks.output.decode()
    assert "can't fork" in text or "Resource temporarily unavailable" in text, text[-500:]


def test_the_registry_refuses_whoever_lacks_its_password(swarm, cluster):
    """A tenant's replica reaches the registry's address: without the password it can
    neither list, pull nor push images."""
    import requests

    runtime, image = swarm
    files = runtime.registry.files
    ref = runtime.publish(image)
    base = f"https://{files.listen}/v2"
    verify = str(files.ca_cert)
    user, password = files.credentials()
    for auth in (None, (user, "guess"), ("admin", password)):
        assert requests.get(f"{base}/_catalog", timeout=10, verify=verify,
                            auth=auth).status_code == 401
        assert requests.get(f"{base}/{image.replace(':', '/manifests/')}", timeout=10,
                            verify=verify, auth=auth).status_code == 401
        assert requests.post(f"{base}/{runtime.instance}/evil/blobs/uploads/", timeout=10,
                             verify=verify, auth=auth).status_code == 401
    assert requests.get(f"{base}/_catalog", timeout=10, verify=verify,
                        auth=(user, password)).status_code == 200
    node = cluster.nodes[2]  # a node's engine, which keeps no credentials
    with pytest.raises(docker.errors.APIError, match="(?i)auth|unauthorized"):
        node.client.images.pull(ref)
    assert not node.client.images.list(name=ref.rsplit(":", 1)[0])


def test_the_registry_password_is_kept_private(registry):
    files = RegistryFiles(registry)
    user, password = files.credentials()
    assert user == "gitpaas" and len(password) >= 40
    assert files.password_file.stat().st_mode & 0o777 == 0o600
    assert files.htpasswd.stat().st_mode & 0o777 == 0o600
    assert files.auth.stat().st_mode & 0o777 == 0o700
    htpasswd = files.htpasswd.read_text()
    assert htpasswd.startswith("gitpaas:$2") and password not in htpasswd
    assert password not in files.config.read_text()
    assert password not in (files.root / "registry.log").read_text()


def test_the_registry_password_is_not_in_the_service_or_its_tasks(swarm, cluster):
    from docker import auth

    runtime, image = swarm
    started = runtime.start_process("shop", 7, image, "worker", 1, {}, "exec sleep 600")
    _, password = runtime.registry.files.credentials()
    header = auth.encode_header(runtime.client.api._auth_configs.resolve_authconfig(
        runtime.registry.files.listen))
    assert header  # the service was created with the registry's credentials ...
    name = service_name(runtime.instance, "shop", 7, "worker")
    api = cluster.manager.client.api
    shown = json.dumps([api.inspect_service(name), api.services(),
                        api.tasks(filters={"service": name}), api.inspect_task(started[0].id),
                        task_container(cluster, started[0]).attrs])
    for secret in (password, header.decode() if isinstance(header, bytes) else header):
        assert secret not in shown  # ... which no inspection shows
    assert "RegistryAuth" not in shown


def test_a_node_without_no_new_privileges_runs_no_replica(registry, docker_client,
                                                          busybox_image):
    """A node whose dockerd lacks ``no-new-privileges`` (an operator skipped that line of
    hosts:add): the entry point refuses to run the app there, and the deploy says why."""
    import time

    from gitpaas.errors import DeployError
    from gitpaas.registry import Registry

    instance = unique("t")
    settings = Settings(data_dir=registry.data_dir, instance=instance,
                        registry_listen=registry.registry_listen)
    image = f"{instance}/lax:v1"
    docker_client.images.get(busybox_image).tag(*image.split(":"))
    with swarm_cluster(docker_client, 1, daemon_config={}) as lax:
        lax.trust_ca(registry.registry_listen, RegistryFiles(registry).ca_cert.read_bytes())
        runtime = SwarmRuntime(lax.manager.client, DockerRuntime(docker_client, instance),
                               Registry(settings), instance)
        try:
            started = time.monotonic()
            with pytest.raises(DeployError, match="node node1 runs containers without"
                               " no-new-privileges.*daemon.json"):
                runtime.start_process("lax", 1, image, "web", 1, {}, COMMAND, web=True)
            assert time.monotonic() - started < 90
            assert runtime.list("lax") == []
        finally:
            runtime.remove(runtime.list())
            runtime.remove_unused_secrets(min_age=0)
            runtime.remove_network("lax")
            runtime.registry.delete(image)
            docker_client.images.remove(image, force=True)
