"""Issue 7, point 11: the reconciler brings Docker and Redis back to the recorded state."""

from __future__ import annotations

import http.client
import time

import pytest

from gitpaas import settings as settings_mod
from gitpaas.platform import Platform
from gitpaas.reconcile import Reconciler as RealReconciler
from gitpaas.runtime.network import find_network

pytestmark = pytest.mark.timeout(300)
WEB = "httpd -f -p 5000 -h /tmp"
PASS = {"kind": "first"}


@pytest.fixture(autouse=True, params=["first", "later"])
def pass_kind(request):
    """Every test runs twice: as the start-up pass (every app locked and listed) and as a
    later pass, which skips the apps its first listing shows steady: a broken app must be
    repaired all the same."""
    PASS["kind"] = request.param
    yield request.param
    PASS["kind"] = "first"


def Reconciler(platform, **kwargs) -> RealReconciler:  # noqa: N802 - stands in for the class
    reconciler = RealReconciler(platform, **kwargs)
    reconciler._first_pass = PASS["kind"] == "first"
    return reconciler


@pytest.fixture
def platform(tmp_path, instance, docker_client, busybox_image):
    p = Platform(settings_mod.load({
        "data_dir": tmp_path / "data", "instance": instance, "redis_url":
        "redis://127.0.0.1:6379/15", "stop_timeout": 1, "health_timeout": 20,
        "default_memory": ""}, environ={}))
    p.__dict__["docker"] = docker_client
    yield p
    for c in docker_client.containers.list(all=True,
                                           filters={"label": f"gitpaas.instance={instance}"}):
        c.remove(force=True)
    p.routes.close()


def deploy(platform, busybox_image, app: str, web: int = 1):
    store = platform.store
    if store.find_app(app) is None:
        store.create_app(app, "admin", "main")
    store.set_formation(app, {"web": web})
    release = store.add_release(app, busybox_image, "c" * 40, {"WHO": app}, {"web": WEB},
                                "test", "admin")
    platform.deployer.start_release(app, release, lambda _: None)
    platform.deployer.wait_retired()
    return store.current_release(app)


def backends(platform, app: str) -> list[str]:
    return platform.routes.get(f"{app}.{platform.settings.domain}")


def ports(platform, app: str) -> list[str]:
    return sorted(c.backend for c in platform.runtime.list(app) if c.status == "running")


def answers(backend: str) -> bool:
    host, port = backend.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        conn.request("GET", "/")
        return conn.getresponse().status < 500
    finally:
        conn.close()


def test_missing_container_is_restarted_and_routed(platform, busybox_image, docker_client):
    deploy(platform, busybox_image, "shop", web=2)
    gone = platform.runtime.list("shop")[0]
    docker_client.containers.get(gone.id).remove(force=True)
    report = Reconciler(platform).run_once()
    assert report.started == [gone.name]
    assert sorted(backends(platform, "shop")[1:]) == ports(platform, "shop")
    assert len(ports(platform, "shop")) == 2
    assert all(answers(b) for b in backends(platform, "shop")[1:])
    assert not Reconciler(platform).run_once().changed  # converged


def test_one_listing_a_pass_unless_the_app_changed_meanwhile(platform, busybox_image,
                                                              docker_client, pass_kind):
    """Issue 13: a converged pass lists the containers once; an app whose lock was let go
    after the listing began is listed again under its lock (a deploy finished meanwhile),
    so the container it started is not started twice."""
    deploy(platform, busybox_image, "shop")
    reconciler = Reconciler(platform)
    reconciler.run_once()
    time.sleep(0.1)  # the pass's own release of the lock is older than the next listing
    runtime = platform.runtime
    calls = []
    real_list = runtime.list

    def counting_list(*args, **kwargs):
        calls.append(args)
        found = real_list(*args, **kwargs)
        if len(calls) == 1 and late:  # a deploy finishing just after the listing
            with platform.lock("shop", "test deploy"):
                late.append(runtime.start("shop", 1, busybox_image, "web", 2, {}, WEB,
                                          web=True))
        return found

    runtime.__dict__["list"] = counting_list
    late: list = []
    # a later pass skips the steady app; the start-up pass lists each app under its lock
    steady = [()] if pass_kind == "later" else [(), ("shop",)]
    assert not reconciler.run_once().changed and calls == steady
    calls.clear()
    late.append(None)
    platform.store.set_formation("shop", {"web": 2})
    report = reconciler.run_once()
    assert calls == [(), ("shop",)] and report.started == []  # web.2 seen, not started again
    assert len([c for c in real_list("shop") if c.status == "running"]) == 2


def test_port_change_after_restart_rewrites_routes(platform, busybox_image, docker_client):
    deploy(platform, busybox_image, "shop")
    before = backends(platform, "shop")
    info = platform.runtime.list("shop")[0]
    container = docker_client.containers.get(info.id)
    container.stop(timeout=1)
    # The web container is routed at its address on the app's bridge (issue 17, scale),
    # which Docker gives back on a restart unless another container took it meanwhile.
    squatter = docker_client.containers.run(
        busybox_image, ["sleep", "60"], detach=True, name=f"{info.name}-squat",
        network=f"{platform.settings.instance}.shop",
        labels={"gitpaas.instance": platform.settings.instance})
    try:
        container.start()
        container.reload()
        after = ports(platform, "shop")
        assert after != before[1:]  # a new address
        report = Reconciler(platform).run_once()
        assert report.routed == ["shop.paas.localhost"] and report.started == []
        assert backends(platform, "shop") == ["shop", *after]
    finally:
        squatter.remove(force=True)


def test_stopped_container_is_replaced(platform, busybox_image, docker_client):
    deploy(platform, busybox_image, "shop")
    info = platform.runtime.list("shop")[0]
    docker_client.containers.get(info.id).stop(timeout=1)
    report = Reconciler(platform).run_once()
    assert report.removed == [info.name] and report.started == [info.name]
    assert backends(platform, "shop") == ["shop", *ports(platform, "shop")]


def test_orphans_are_removed_after_the_grace(platform, busybox_image):
    current = deploy(platform, busybox_image, "shop")
    runtime = platform.runtime
    old = runtime.start("shop", 99, busybox_image, "web", 1, {},
                        WEB, web=True)
    ghost = runtime.start("ghost", 1, busybox_image, "web", 1, {}, WEB, web=True)
    extra = runtime.start("shop", current.version, busybox_image, "web", 7, {}, WEB, web=True)
    reconciler = Reconciler(platform, orphan_grace=3600)
    first = reconciler.run_once()
    assert first.removed == [extra.name]  # a surplus replica of the current release: at once
    assert {c.name for c in runtime.list()} >= {old.name, ghost.name}  # maybe still retiring
    second = reconciler.run_once(grace=0)
    assert sorted(second.removed) == sorted([old.name, ghost.name])
    assert [c.name for c in runtime.list()] == [f"{platform.settings.instance}.shop.v1.web.1"]


def test_one_off_leftovers_are_removed(platform, busybox_image, docker_client):
    current = deploy(platform, busybox_image, "shop")
    name = f"{platform.settings.instance}.shop.v{current.version}.release.0"
    docker_client.containers.run(busybox_image, ["sleep", "60"], name=name, detach=True,
                                 labels={"gitpaas.instance": platform.settings.instance,
                                         "gitpaas.app": "shop", "gitpaas.oneoff": "1",
                                         "gitpaas.release": str(current.version),
                                         "gitpaas.process": "release",
                                         "gitpaas.replica": "0"})
    assert Reconciler(platform).run_once().removed == [name]


def test_a_host_is_never_routed_to_another_app(platform, busybox_image):
    deploy(platform, busybox_image, "shop")
    deploy(platform, busybox_image, "blog")
    blog = backends(platform, "blog")[1:]
    platform.routes.swap("shop", ["shop.paas.localhost"], blog)  # corrupted by hand
    platform.routes.swap("gone", ["gone.paas.localhost"], blog)  # a destroyed app's host
    report = Reconciler(platform).run_once()
    assert sorted(report.routed) == ["gone.paas.localhost", "shop.paas.localhost"]
    assert backends(platform, "shop") == ["shop", *ports(platform, "shop")]
    assert set(backends(platform, "shop")[1:]).isdisjoint(blog)
    assert backends(platform, "gone") == []


def test_frontends_of_other_hipache_tools_are_left_alone(platform, busybox_image):
    import redis

    deploy(platform, busybox_image, "shop")
    client = redis.Redis.from_url(platform.settings.redis_url)
    prefix = platform.settings.routes_prefix
    client.rpush(f"{prefix}frontend:other.example.com", "their-app", "http://127.0.0.1:9")
    platform.routes.swap("gone", ["gone.paas.localhost"], ["http://127.0.0.1:9"])
    try:
        report = Reconciler(platform).run_once()
        assert report.routed == ["gone.paas.localhost"]
        assert client.lrange(f"{prefix}frontend:other.example.com", 0, -1) == [
            b"their-app", b"http://127.0.0.1:9"]
        assert platform.routes.written() == {"shop.paas.localhost"}
    finally:
        client.delete(f"{prefix}frontend:other.example.com")
        client.close()


def test_a_busy_app_is_skipped_then_repaired(platform, busybox_image, docker_client):
    deploy(platform, busybox_image, "shop")
    info = platform.runtime.list("shop")[0]
    docker_client.containers.get(info.id).remove(force=True)
    with platform.lock("shop", "a deploy in progress"):
        report = Reconciler(platform).run_once()
        assert report.skipped == ["shop"] and report.started == []
    assert Reconciler(platform).run_once().started == [info.name]


def test_stopped_apps_stay_stopped(platform, busybox_image):
    current = deploy(platform, busybox_image, "shop")
    platform.store.set_release_status("shop", current.version, "stopped")
    platform.runtime.remove(platform.runtime.list("shop"), stop_timeout=1)
    platform.routes.remove(["shop.paas.localhost"])
    assert not Reconciler(platform).run_once().changed
    assert platform.runtime.list("shop") == []


def test_start_up_marks_interrupted_releases_failed(platform, busybox_image):
    current = deploy(platform, busybox_image, "shop")
    pending = platform.store.add_release("shop", busybox_image, "d" * 40, {}, {"web": WEB},
                                         "killed mid-deploy", "admin")
    orphan = platform.runtime.start("shop", pending.version, busybox_image, "web", 1, {}, WEB,
                                    web=True)
    platform.routes.swap("shop", ["shop.paas.localhost"], [orphan.backend])  # swapped, then died
    report = Reconciler(platform).start_up()
    assert report.failed_releases == [f"shop v{pending.version}"]
    assert platform.store.get_release("shop", pending.version).status == "failed"
    assert platform.store.current_release("shop").version == current.version
    assert report.removed == [orphan.name]
    assert backends(platform, "shop") == ["shop", *ports(platform, "shop")]


def test_a_paused_container_is_left_alone(platform, busybox_image, docker_client):
    deploy(platform, busybox_image, "shop")
    info = platform.runtime.list("shop")[0]
    route = backends(platform, "shop")
    container = docker_client.containers.get(info.id)
    container.pause()
    try:
        for _ in range(2):
            report = Reconciler(platform).run_once(grace=0.0)
            assert not report.changed, report
        assert [(c.id, c.status) for c in platform.runtime.list("shop")] == [(info.id, "paused")]
        assert backends(platform, "shop") == route
    finally:
        container.unpause()  # the operator can: the container is still there
    assert answers(route[1])


def test_a_steady_pass_lists_docker_once(platform, busybox_image, pass_kind):
    """A later pass over steady apps takes no app's lock and lists Docker once, not once
    per app (200 listings per pass slowed every deploy of a 200-app host); a broken app
    among them still gets its own listing, under its lock, and its repair."""
    for app in ("shop", "blog", "wiki"):
        deploy(platform, busybox_image, app)
    calls = []
    real_list = platform.runtime.list

    def counted(app=None, **kwargs):
        calls.append(app)
        return real_list(app, **kwargs)

    platform.runtime.list = counted
    reconciler = Reconciler(platform)
    assert not reconciler.run_once().changed
    if pass_kind == "later":
        assert calls == [None]
    else:
        assert sorted(calls, key=str) == [None, "blog", "shop", "wiki"]
    calls.clear()
    platform.routes.swap("blog", ["blog.paas.localhost"], ["http://127.0.0.1:9"])
    report = reconciler.run_once()
    if pass_kind == "later":
        assert calls == [None, "blog"]
    assert report.routed == ["blog.paas.localhost"]
    assert backends(platform, "blog") == ["blog", *ports(platform, "blog")]


def test_a_run_container_not_started_yet_is_left_alone(platform, busybox_image, docker_client):
    """``run`` creates its container, attaches, then starts it, without the app's lock: a
    pass in between saw a ``created`` container of the current release and removed it as
    an orphan (the user's command then died of SIGTERM, exit 143)."""
    current = deploy(platform, busybox_image, "shop")
    name = f"{platform.settings.instance}.shop.v{current.version}.run.0123abcd"
    docker_client.containers.create(
        busybox_image, ["sleep", "60"], name=name,
        labels={"gitpaas.instance": platform.settings.instance, "gitpaas.app": "shop",
                "gitpaas.oneoff": "run", "gitpaas.release": str(current.version),
                "gitpaas.process": "run", "gitpaas.replica": "0"})
    report = Reconciler(platform).run_once(grace=0.0)
    assert name not in report.removed
    assert docker_client.containers.get(name).status == "created"


def test_networks_of_apps_gone_outside_destroy_are_removed_once_unused(
        platform, busybox_image, docker_client):
    """A crash mid-destroy (or a deleted row) leaves the app's network: the reconciler
    removes it once no container uses it, and never a network that is not this
    instance's own app network."""
    instance = platform.settings.instance
    deploy(platform, busybox_image, "gone")
    deploy(platform, busybox_image, "kept")
    networks = platform.runtime.sandbox.networks
    made: list[str] = []
    try:
        # Look-alikes: copied labels under another name, another instance's network.
        for name, labels in ((f"{instance}-copy", {"gitpaas.instance": instance,
                                                   "gitpaas.app": "ghost"}),
                             (f"{instance}x.ghost", {"gitpaas.instance": f"{instance}x",
                                                     "gitpaas.app": "ghost"})):
            made.append(docker_client.api.create_network(name, labels=labels)["Id"])
        platform.store.delete_app("gone")  # the row went; containers and network stayed
        squatter = docker_client.containers.run(
            busybox_image, ["sleep", "120"], detach=True, network=networks.name("gone"),
            labels={"test.instance": instance})
        try:
            first = Reconciler(platform).run_once(grace=0)
            assert [c.name for c in platform.runtime.list("gone")] == []  # orphans went
            assert find_network(docker_client, f"{instance}.gone")  # a container uses it
        finally:
            squatter.remove(force=True)
        second = Reconciler(platform).run_once(grace=0)
        assert not find_network(docker_client, f"{instance}.gone")
        assert find_network(docker_client, f"{instance}.kept")
        assert first.networks == [] and second.networks == [f"{instance}.gone"]
        assert second.changed and networks.apps_with_networks() == {"kept"}
        for network_id in made:
            docker_client.api.inspect_network(network_id)  # still there
        assert Reconciler(platform).run_once(grace=0).networks == []
    finally:
        for network_id in made:
            docker_client.api.remove_network(network_id)
