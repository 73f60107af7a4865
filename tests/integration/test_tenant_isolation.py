"""Issue 11: one tenant's build or container reaches no other tenant's app (real Docker)."""

from __future__ import annotations

import io
import tarfile
import threading
import time

import pytest

from gitpaas import settings as settings_mod
from gitpaas.errors import DeployError
from gitpaas.platform import Platform
from gitpaas.reconcile import Reconciler

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


def wait_for(predicate, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("timed out")


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
            if c["Id"] not in {v.id for v in victim}])
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


def test_app_containers_reach_mariadb(platform, busybox_image, docker_client, mysql_admin_url):
    """Their own network does not cut apps off their databases (mysql_app_host)."""
    deploy(platform, busybox_image, "victim")
    info = platform.runtime.list("victim")[0]
    host = platform.settings.mysql_app_host
    code, out = exec_sh(docker_client, info,
                        f"sleep 1 | nc -w 3 {host} 3306 | head -c 100 | tr -c 'A-Za-z0-9' ' '")
    assert "MariaDB" in out or "mysql" in out
