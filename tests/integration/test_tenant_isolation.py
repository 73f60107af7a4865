"""Issue 11: one tenant's build or container reaches no other tenant's app (real Docker)."""

from __future__ import annotations

import io
import re
import tarfile
import threading
import time

import pytest

from gitpaas import settings as settings_mod
from gitpaas.errors import DeployError
from gitpaas.platform import Platform
from gitpaas.reconcile import Reconciler
from tests.harness import wait_for

pytestmark = pytest.mark.timeout(300)
WEB = "httpd -f -p 5000 -h /tmp"


@pytest.fixture
def platform(tmp_path, instance, docker_client, busybox_image):
    p = Platform(settings_mod.load({
        "data_dir": tmp_path / "data", "instance": instance, "redis_url":
        "redis://127.0.0.1:6379/15", "stop_timeout": 1, "health_timeout": 20,
        "default_memory": "", "build_allowed_images": busybox_image}, environ={}))
    p.__dict__["docker"] = docker_client
    yield p
    for c in docker_client.containers.list(all=True,
                                           filters={"label": f"gitpaas.instance={instance}"}):
        c.remove(force=True)
    for app in ("victim", "mal"):
        p.runtime.remove_network(app)
    p.routes.close()


def deploy(platform, image: str, app: str):
    store = platform.store
    if store.find_app(app) is None:
        store.create_app(app, "admin", "main")
    release = store.add_release(app, image, "c" * 40, {}, {"web": WEB}, "test", "admin")
    platform.deployer.start_release(app, release, lambda _: None)
    platform.deployer.wait_retired()
    return store.current_release(app)


def context(files: dict[str, str]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


def test_forged_labels_on_a_build_container_touch_no_app(platform, busybox_image,
                                                         docker_client):
    """Finding 2: a build's intermediate container carries its Dockerfile's labels."""
    instance = platform.settings.instance
    current = deploy(platform, busybox_image, "victim")
    victim = platform.runtime.list("victim")
    labels = (f"gitpaas.instance={instance} gitpaas.app=victim "
              f"gitpaas.release={current.version} gitpaas.process=web gitpaas.replica=1")
    dockerfile = f"FROM {busybox_image}\nLABEL {labels}\nRUN sleep 6\n"
    errors: list[Exception] = []

    def build():  # straight to the builder: the Dockerfile check is not what is tested here
        try:
            platform.deployer.builder.build(context({"Dockerfile": dockerfile}),
                                            f"{instance}/mal:v1", {}, lambda _: None)
        except DeployError as exc:
            errors.append(exc)

    thread = threading.Thread(target=build)
    thread.start()
    try:
        forged = wait_for(lambda: [c for c in docker_client.api.containers(
            filters={"label": ["gitpaas.app=victim", f"gitpaas.instance={instance}"]})
            if c["Id"] not in {v.id for v in victim}], 60)
        assert forged  # the build container claims to be victim's web.1
        report = Reconciler(platform).run_once(grace=0)
        assert report.removed == [] and report.started == []
        assert [c.id for c in platform.runtime.list("victim")] == [v.id for v in victim]
        assert docker_client.containers.get(victim[0].id).status == "running"
    finally:
        thread.join(60)
    # the image carries the reserved labels: the builder refuses and removes it
    assert errors and "reserved label" in errors[0].message
    assert not docker_client.images.list(name=f"{instance}/mal")


def container_ip(docker_client, info) -> str:
    networks = docker_client.api.inspect_container(info.id)["NetworkSettings"]["Networks"]
    return next(iter(networks.values()))["IPAddress"]


def exec_sh(docker_client, info, script: str) -> tuple[int, str]:
    code, out = docker_client.containers.get(info.id).exec_run(["sh", "-c", script])
    return code, out.decode("utf-8", "replace")


def test_apps_live_on_networks_of_their_own(platform, busybox_image, docker_client):
    """Finding 4: from app A's container, app B's container IP:5000 does not answer."""
    deploy(platform, busybox_image, "victim")
    deploy(platform, busybox_image, "mal")
    victim, mal = platform.runtime.list("victim")[0], platform.runtime.list("mal")[0]
    nets = {name: docker_client.api.inspect_network(f"{platform.settings.instance}.{name}")
            for name in ("victim", "mal")}
    subnets = {n["IPAM"]["Config"][0]["Subnet"] for n in nets.values()}
    assert len(subnets) == 2 and all(s.startswith("10.213.") for s in subnets)
    target = container_ip(docker_client, victim)
    own = container_ip(docker_client, mal)
    code, _ = exec_sh(docker_client, mal, f"nc -w 3 {own} 5000 </dev/null")
    assert code == 0  # the probe works: its own web answers
    code, _ = exec_sh(docker_client, mal, f"echo 'GET / HTTP/1.0' | nc -w 3 {target} 5000")
    assert code != 0
    # the edge still reaches both through the published loopback ports
    assert victim.port and mal.port


def test_containers_are_confined(platform, busybox_image, docker_client):
    """Finding 4: no-new-privileges, a pids limit, no NET_RAW."""
    deploy(platform, busybox_image, "victim")
    info = platform.runtime.list("victim")[0]
    host = docker_client.api.inspect_container(info.id)["HostConfig"]
    assert host["SecurityOpt"] == ["no-new-privileges"]
    assert host["PidsLimit"] == platform.settings.pids_limit
    assert "NET_RAW" not in (host["CapAdd"] or []) and host["CapDrop"] == ["ALL"]
    code, out = exec_sh(docker_client, info, "grep -E '^(CapEff|NoNewPrivs)' /proc/self/status")
    caps = int(out.split("CapEff:")[1].split()[0], 16)
    assert caps & (1 << 13) == 0  # CAP_NET_RAW
    assert "NoNewPrivs:\t1" in out
    code, _ = exec_sh(docker_client, info, "ping -c 1 -W 1 127.0.0.1")
    assert code != 0  # raw sockets are refused


def test_destroy_removes_the_network(platform, busybox_image, docker_client):
    deploy(platform, busybox_image, "mal")
    name = f"{platform.settings.instance}.mal"
    assert docker_client.networks.list(names=[name])
    platform.runtime.remove(platform.runtime.list("mal"), stop_timeout=1)
    platform.runtime.remove_network("mal")
    assert not [n for n in docker_client.networks.list(names=[name]) if n.name == name]


def test_a_network_removed_behind_the_platforms_back_is_made_again(platform, busybox_image,
                                                                   docker_client):
    """Issue 17: a deploy's starts trust the network an earlier start found (no listing per
    container); when it was removed outside gitpaas, Docker refuses the start and the
    network is made again: the deploy succeeds on the app's own network."""
    deploy(platform, busybox_image, "mal")
    name = f"{platform.settings.instance}.mal"
    networks = platform.runtime.sandbox.networks
    listed = []
    real_find = networks._find
    networks._find = lambda n: listed.append(n) or real_find(n)
    deploy(platform, busybox_image, "mal")
    assert listed == []  # the second deploy did not look the network up
    platform.deployer.wait_retired()
    platform.runtime.remove(platform.runtime.list("mal"), stop_timeout=1)
    net = [n for n in docker_client.networks.list(names=[name]) if n.name == name][0]
    net.remove()  # behind gitpaas's back
    release = deploy(platform, busybox_image, "mal")
    assert release.status == "succeeded" and listed == [name]
    info = platform.runtime.list("mal")[0]
    attached = docker_client.api.inspect_container(info.id)["NetworkSettings"]["Networks"]
    assert list(attached) == [name]


def test_app_containers_reach_mariadb(platform, busybox_image, docker_client, mysql_admin_url):
    """Their own network does not cut apps off their databases (mysql_app_host)."""
    deploy(platform, busybox_image, "victim")
    info = platform.runtime.list("victim")[0]
    host = platform.settings.mysql_app_host
    code, out = exec_sh(docker_client, info,
                        f"sleep 1 | nc -w 3 {host} 3306 | head -c 100 | tr -c 'A-Za-z0-9' ' '")
    assert "MariaDB" in out or "mysql" in out


# -- builds (finding 3) -------------------------------------------------------------------

PROBE = ("RUN for t in {targets}; do if nc -w 3 ${{t%:*}} ${{t#*:}} </dev/null; "
         "then echo REACHED $t; else echo BLOCKED $t; fi; done")


def build_output(platform, dockerfile: str, tag: str) -> tuple[list[str], DeployError | None]:
    lines: list[str] = []
    try:
        platform.builder.build(context({"Dockerfile": dockerfile}), tag, {}, lines.append)
    except DeployError as exc:
        return lines, exc
    return lines, None


@pytest.fixture
def sandboxed(platform):
    yield platform
    platform.builder.sandbox.remove()


def test_a_build_reaches_neither_the_host_nor_the_apps(sandboxed, busybox_image,
                                                      docker_client):
    import socket

    platform = sandboxed
    deploy(platform, busybox_image, "victim")
    victim = container_ip(docker_client, platform.runtime.list("victim")[0])
    platform.builder.sandbox.ensure()
    gateway = platform.builder.sandbox.gateway()
    # the router/edge as a build sees it: a port on the host's address on the bridge
    router = socket.create_server((gateway, 0))
    port = router.getsockname()[1]
    mariadb = f"{platform.settings.mysql_app_host}:3306"
    targets = f"{gateway}:{port} {victim}:5000 {mariadb} 127.0.0.1:6379 {gateway}:6379"
    dockerfile = (f"FROM {busybox_image}\n"
                  "RUN (nc -l -p 7000 -e true &) ; sleep 0.3; nc -w 3 127.0.0.1 7000 </dev/null"
                  " && echo PROBE WORKS\n" + PROBE.format(targets=targets) + "\n")
    try:
        lines, error = build_output(platform, dockerfile, f"{platform.settings.instance}/mal:v1")
    finally:
        router.close()
    said = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in lines]
    assert error is None, error
    assert "PROBE WORKS" in said
    assert not [line for line in said if line.startswith("REACHED")], said
    assert len([line for line in said if line.startswith("BLOCKED")]) == 5
    assert platform.builder.sandbox.network in {
        n["Name"] for n in docker_client.api.networks()}


def test_a_build_over_its_memory_limit_fails_clearly(sandboxed, busybox_image):
    platform = sandboxed
    object.__setattr__(platform.builder.limits, "memory", "64m")
    dockerfile = f"FROM {busybox_image}\nRUN dd if=/dev/zero of=/dev/null bs=200M count=1\n"
    _, error = build_output(platform, dockerfile, f"{platform.settings.instance}/mal:v1")
    assert error is not None
    assert "build memory limit of 64m" in error.message


def test_a_build_over_its_time_limit_is_stopped(sandboxed, busybox_image, docker_client):
    platform = sandboxed
    object.__setattr__(platform.builder.limits, "timeout", 4.0)
    dockerfile = f"FROM {busybox_image}\nRUN sleep 60\n"
    started = time.monotonic()
    _, error = build_output(platform, dockerfile, f"{platform.settings.instance}/mal:v1")
    assert error is not None and "time limit of 4 s" in error.message
    assert time.monotonic() - started < 20
    network = platform.builder.sandbox.network
    # the daemon cancels the build: its RUN container goes away
    wait_for(lambda: not docker_client.api.containers(filters={"network": network}), 30)


def test_more_networks_than_dockers_default_pools_hold(docker_client, instance):
    """Docker's default pools give ~30 networks: gitpaas carves its own subnets."""
    from gitpaas.runtime import AppNetworks

    networks = AppNetworks(docker_client, instance, "10.213.0.0/16", 26)
    apps = [f"app{i}" for i in range(40)]
    try:
        for app in apps:
            networks.ensure(app)
        networks.ensure(apps[0])  # idempotent
        subnets = [docker_client.api.inspect_network(networks.name(a))["IPAM"]["Config"][0]
                   ["Subnet"] for a in apps]
        assert len(set(subnets)) == 40
        assert all(s.startswith("10.213.") and s.endswith("/26") for s in subnets)
    finally:
        for app in apps:
            networks.remove(app)
    assert not docker_client.api.networks(filters={"label": f"gitpaas.instance={instance}"})
