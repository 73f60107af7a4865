"""Issue 17, scale: with the default ``container_host`` web containers publish no port;
the router reaches them at their address on their app's bridge (real Docker, Redis)."""

from __future__ import annotations

import http.client
import subprocess

import pytest

from gitpaas import settings as settings_mod
from gitpaas.platform import Platform
from gitpaas.reconcile import Reconciler

pytestmark = pytest.mark.timeout(300)
WEB = "httpd -f -p 5000 -h /tmp"
WORKER = "sleep 600"


def make_platform(tmp_path, instance, docker_client, **extra) -> Platform:
    p = Platform(settings_mod.load({
        "data_dir": tmp_path / "data", "instance": instance, "redis_url":
        "redis://127.0.0.1:6379/15", "stop_timeout": 1, "health_timeout": 20,
        "default_memory": "", **extra}, environ={}))
    p.__dict__["docker"] = docker_client
    return p


@pytest.fixture
def platforms(tmp_path, instance, docker_client):
    made: list[Platform] = []

    def make(**extra) -> Platform:
        made.append(make_platform(tmp_path / str(len(made)), instance, docker_client,
                                  **extra))
        return made[-1]

    yield make
    for c in docker_client.containers.list(all=True,
                                           filters={"label": f"gitpaas.instance={instance}"}):
        c.remove(force=True)
    for p in made:
        for app in ("shop", "mal"):
            p.runtime.remove_network(app)
        p.routes.close()


def deploy(platform, image: str, app: str, processes: dict[str, str] | None = None):
    store = platform.store
    if store.find_app(app) is None:
        store.create_app(app, "admin", "main")
    processes = processes or {"web": WEB}
    store.set_formation(app, dict.fromkeys(processes, 1))
    release = store.add_release(app, image, "c" * 40, {}, processes, "test", "admin")
    platform.deployer.start_release(app, release, lambda _: None)
    platform.deployer.wait_retired()
    return store.current_release(app)


def get(backend: str) -> int:
    host, port = backend.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        conn.request("GET", "/")
        return conn.getresponse().status
    finally:
        conn.close()


def bridge_address(docker_client, platform, container_id: str, app: str) -> str:
    networks = docker_client.api.inspect_container(container_id)["NetworkSettings"]["Networks"]
    return networks[f"{platform.settings.instance}.{app}"]["IPAddress"]


def test_a_web_container_publishes_nothing_and_is_routed_at_its_bridge_address(
        platforms, busybox_image, docker_client):
    platform = platforms()
    deploy(platform, busybox_image, "shop", {"web": WEB, "worker": WORKER})
    infos = {i.process: i for i in platform.runtime.list("shop")}
    web, worker = infos["web"], infos["worker"]
    attrs = docker_client.api.inspect_container(web.id)
    assert not attrs["HostConfig"]["PortBindings"]  # no docker-proxy, no DNAT rules
    assert not attrs["NetworkSettings"]["Ports"]
    address = bridge_address(docker_client, platform, web.id, "shop")
    assert address.startswith("10.213.")
    expected = f"http://{address}:5000"
    assert web.backend == expected and worker.port is None
    assert platform.runtime.get(web.id).backend == expected  # inspect and listing agree
    assert platform.routes.get(f"shop.{platform.settings.domain}") == ["shop", expected]
    assert get(expected) < 500  # the router's host reaches it
    # ... from the app network's gateway, the one address the php and wordpress images
    # take X-Forwarded-For from (images/php/site.conf), as through docker-proxy before
    gateway = attrs["NetworkSettings"]["Networks"][f"{platform.settings.instance}.shop"][
        "Gateway"]
    route = subprocess.run(["ip", "route", "get", address], capture_output=True, text=True,
                           check=True).stdout.split()
    assert route[route.index("src") + 1] == gateway
    # a steady app is left alone by the reconciler: the route is what it expects
    report = Reconciler(platform).run_once(grace=0)
    assert report.routed == [] and report.started == [] and report.removed == []


def test_another_app_cannot_reach_the_routed_address(platforms, busybox_image,
                                                      docker_client):
    platform = platforms()
    deploy(platform, busybox_image, "shop")
    deploy(platform, busybox_image, "mal")
    shop, mal = platform.runtime.list("shop")[0], platform.runtime.list("mal")[0]
    mal_container = docker_client.containers.get(mal.id)
    code, _ = mal_container.exec_run(["sh", "-c", f"nc -w 3 {mal.host} 5000 </dev/null"])
    assert code == 0  # the probe works: its own web answers at its routed address
    code, _ = mal_container.exec_run(
        ["sh", "-c", f"echo 'GET / HTTP/1.0' | nc -w 3 {shop.host} {shop.port}"])
    assert code != 0


def test_a_restarted_container_is_rerouted_to_its_new_address(platforms, busybox_image,
                                                              docker_client):
    platform = platforms()
    deploy(platform, busybox_image, "shop")
    # a second container on the network takes the address back while the first is down
    info = platform.runtime.list("shop")[0]
    container = docker_client.containers.get(info.id)
    container.stop(timeout=1)
    squatter = docker_client.containers.run(
        busybox_image, ["sleep", "60"], detach=True, network=f"{platform.settings.instance}.shop",
        labels={"gitpaas.instance": platform.settings.instance}, name=f"{info.name}-squat")
    try:
        container.start()
        moved = platform.runtime.get(info.id)
        assert moved is not None and moved.host != info.host and moved.port == 5000
        report = Reconciler(platform).run_once(grace=0)
        assert report.routed == [f"shop.{platform.settings.domain}"]
        assert platform.routes.get(f"shop.{platform.settings.domain}") == ["shop", moved.backend]
        assert get(moved.backend) < 500
    finally:
        squatter.remove(force=True)


def test_another_container_host_still_publishes_there(platforms, busybox_image,
                                                      docker_client):
    """A router elsewhere (any other ``container_host``) needs the published port."""
    platform = platforms(container_host="127.0.0.2")
    deploy(platform, busybox_image, "shop")
    web = platform.runtime.list("shop")[0]
    attrs = docker_client.api.inspect_container(web.id)
    binding = attrs["NetworkSettings"]["Ports"]["5000/tcp"][0]
    assert binding["HostIp"] == "127.0.0.2"
    assert web.backend == f"http://127.0.0.2:{binding['HostPort']}"
    assert platform.routes.get(f"shop.{platform.settings.domain}") == ["shop", web.backend]
    assert get(web.backend) < 500


def test_a_first_start_creates_its_container_while_the_network_is_made(
        platforms, busybox_image, docker_client):
    """Issue 17, scale round 3: Docker checks a container's network at its start, not its
    create, so a first deploy creates its containers while the app's network is still
    being made (``before_start`` waits for it)."""
    platform = platforms()
    name = f"{platform.settings.instance}.shop"
    seen: list[list[str]] = []

    def before_start() -> None:
        seen.append([c.name for c in docker_client.containers.list(
            all=True, filters={"label": f"gitpaas.instance={platform.settings.instance}"})])
        assert not docker_client.api.networks(names=[name])  # not made yet
        platform.runtime.sandbox.networks.ensure("shop")

    info = platform.runtime.start("shop", 1, busybox_image, "web", 1, {"PORT": "5000"}, WEB,
                                  web=True, before_start=before_start)
    assert seen == [[info.name]]  # created before the network existed
    attached = docker_client.api.inspect_container(info.id)["NetworkSettings"]["Networks"]
    assert list(attached) == [name]
    assert info.backend == f"http://{attached[name]['IPAddress']}:5000"
    assert get(info.backend) < 500


def test_a_network_that_never_came_is_made_by_the_start(platforms, busybox_image,
                                                         docker_client):
    """If the network made beside the build failed, the start that waited for it makes
    it (Docker refuses the start, the runtime ensures the network and starts anew)."""
    platform = platforms()
    info = platform.runtime.start("shop", 1, busybox_image, "web", 1, {"PORT": "5000"}, WEB,
                                  web=True, before_start=lambda: None)
    name = f"{platform.settings.instance}.shop"
    attached = docker_client.api.inspect_container(info.id)["NetworkSettings"]["Networks"]
    assert list(attached) == [name] and get(info.backend) < 500
