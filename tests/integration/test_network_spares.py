"""Issue 17 (scale): spare app networks made ahead and claimed by new apps (real Docker).

Isolation is the point of an app's network: two apps never share one, a network with a
container attached is never handed out, a destroyed app's network is removed (never a spare
again), and every user of an app's network (starts, direct routing, removal, the
reconciler) finds the claimed one after a restart as well.
"""

from __future__ import annotations

import threading

import pytest

from gitpaas import settings as settings_mod
from gitpaas.platform import Platform
from gitpaas.reconcile import Reconciler
from gitpaas.runtime import AppNetworks
from gitpaas.runtime.network import SPARE_LABEL
from tests.integration.test_tenant_isolation import container_ip, deploy, exec_sh

pytestmark = pytest.mark.timeout(300)
APPS = ("victim", "mal", "third")


def make_platform(tmp_path, instance, docker_client, busybox_image, spares: int = 2):
    p = Platform(settings_mod.load({
        "data_dir": tmp_path / "data", "instance": instance, "redis_url":
        "redis://127.0.0.1:6379/15", "stop_timeout": 1, "health_timeout": 20,
        "default_memory": "", "build_allowed_images": busybox_image,
        "app_network_spares": spares}, environ={}))
    p.__dict__["docker"] = docker_client
    return p


@pytest.fixture
def platform(tmp_path, instance, docker_client, busybox_image):
    p = make_platform(tmp_path, instance, docker_client, busybox_image)
    yield p
    for c in docker_client.containers.list(all=True,
                                           filters={"label": f"gitpaas.instance={instance}"}):
        c.remove(force=True)
    for app in APPS:
        if p.store.find_app(app) is not None:
            p.runtime.remove_network(app)
    p.runtime.sandbox.networks.remove_spares()
    p.routes.close()
    for net in docker_client.api.networks(filters={"label": f"gitpaas.instance={instance}"}):
        docker_client.api.remove_network(net["Id"])


def networks_of(docker_client, info) -> list[str]:
    return list(docker_client.api.inspect_container(info.id)["NetworkSettings"]["Networks"])


def exists(docker_client, name: str) -> bool:
    return any(n["Name"] == name for n in docker_client.api.networks(names=[name]))


def test_two_apps_from_the_pool_get_networks_of_their_own(platform, busybox_image,
                                                          docker_client):
    """Each new app claims a different spare; neither reaches the other's container,
    and the router's address of each is the one on its claimed network."""
    networks = platform.runtime.sandbox.networks
    assert networks.fill_spares() == 2
    spares = networks.spare_networks()
    labels = docker_client.api.inspect_network(spares[0])["Labels"]
    assert labels == {"gitpaas.instance": platform.settings.instance, SPARE_LABEL: "1"}
    deploy(platform, busybox_image, "victim")
    deploy(platform, busybox_image, "mal")
    victim, mal = platform.runtime.list("victim")[0], platform.runtime.list("mal")[0]
    assert {networks.name("victim"), networks.name("mal")} == set(spares)
    assert networks_of(docker_client, victim) == [networks.name("victim")]
    assert networks_of(docker_client, mal) == [networks.name("mal")]
    assert networks.spare_networks() == []  # both claimed: no longer spares
    assert not exists(docker_client, f"{platform.settings.instance}.victim")
    target, own = container_ip(docker_client, victim), container_ip(docker_client, mal)
    assert victim.host == target and mal.host == own  # direct routing's address
    code, _ = exec_sh(docker_client, mal, f"nc -w 3 {own} 5000 </dev/null")
    assert code == 0  # the probe works: its own web answers
    code, _ = exec_sh(docker_client, mal, f"echo 'GET / HTTP/1.0' | nc -w 3 {target} 5000")
    assert code != 0
    # the third app: no spare left (nothing refilled), so today's create path
    deploy(platform, busybox_image, "third")
    assert networks.name("third") == f"{platform.settings.instance}.third"
    assert networks.fill_spares() == 2  # the filler makes two new ones
    assert not set(networks.spare_networks()) & set(spares)


def test_concurrent_new_apps_never_share_a_network(platform, docker_client, instance):
    """Six apps ensure their networks at once, each through its own ``AppNetworks`` (as
    separate processes would) with two spares ready: two claim one each, four create."""
    networks = platform.runtime.sandbox.networks
    networks.fill_spares()
    apps = [f"n{i}" for i in range(6)]
    for app in apps:
        platform.store.create_app(app, "admin", "main")
    got: dict[str, str] = {}
    barrier = threading.Barrier(len(apps))

    def ensure(app: str) -> None:
        mine = AppNetworks(docker_client, instance, "10.213.0.0/16", 26,
                           claims=lambda: platform.store, spares=2)
        barrier.wait()
        got[app] = mine.ensure(app)

    threads = [threading.Thread(target=ensure, args=(a,)) for a in apps]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(got) == 6 and len(set(got.values())) == 6
        claimed = platform.store.claimed_networks()
        assert len(claimed) == 2 and set(claimed.values()) <= set(apps)
        assert all(got[app] == network for network, app in claimed.items())
    finally:
        for app in apps:
            networks.remove(app)
    assert platform.store.claimed_networks() == {}


def test_a_spare_with_a_container_attached_is_not_handed_out(platform, busybox_image,
                                                             docker_client):
    networks = platform.runtime.sandbox.networks
    networks.fill_spares()
    busy, free = networks.spare_networks()
    squatter = docker_client.containers.create(
        busybox_image, ["sleep", "60"], network=busy,
        labels={"gitpaas.instance": platform.settings.instance})
    try:
        platform.store.create_app("victim", "admin", "main")
        assert networks.ensure("victim") == free
    finally:
        squatter.remove(force=True)


def test_destroy_removes_a_claimed_network_never_returning_it(platform, busybox_image,
                                                              docker_client):
    networks = platform.runtime.sandbox.networks
    networks.fill_spares()
    deploy(platform, busybox_image, "mal")
    name = networks.name("mal")
    assert name in platform.store.claimed_networks()
    platform.runtime.remove(platform.runtime.list("mal"), stop_timeout=1)
    platform.runtime.remove_network("mal")
    platform.store.delete_app("mal")
    assert not exists(docker_client, name)
    assert platform.store.claimed_networks() == {}
    assert name not in networks.spare_networks()


def test_a_claimed_network_of_a_gone_app_is_removed_by_the_reconciler(platform,
                                                                      docker_client):
    """A destroy that stopped half-way (the store's rows gone, the network left): the
    reconciler removes the network and its claim; it never becomes a spare."""
    networks = platform.runtime.sandbox.networks
    networks.fill_spares()
    platform.store.create_app("mal", "admin", "main")
    name = networks.ensure("mal")
    platform.store.delete_app("mal")
    assert platform.store.claimed_networks() == {name: None}
    assert name not in networks.spare_networks()
    report = Reconciler(platform).run_once()
    assert name in report.networks and not exists(docker_client, name)
    assert platform.store.claimed_networks() == {}


def test_a_restarted_platform_keeps_the_claimed_network(platform, tmp_path, instance,
                                                        busybox_image, docker_client):
    networks = platform.runtime.sandbox.networks
    networks.fill_spares()
    deploy(platform, busybox_image, "victim")
    name = networks.name("victim")
    assert name.startswith(f"{instance}.spare_")
    again = make_platform(tmp_path, instance, docker_client, busybox_image)
    try:
        assert again.runtime.sandbox.networks.name("victim") == name
        deploy(again, busybox_image, "victim")
        again.deployer.wait_retired()
        info = again.runtime.list("victim")[0]
        assert networks_of(docker_client, info) == [name]
        assert info.host == container_ip(docker_client, info)
    finally:
        again.routes.close()


def test_spares_off_creates_each_apps_network(tmp_path, instance, docker_client,
                                              busybox_image):
    # spares made while they were on (same instance and store) go when they are off
    on = make_platform(tmp_path, instance, docker_client, busybox_image)
    assert on.runtime.sandbox.networks.fill_spares() == 2
    on.routes.close()
    p = make_platform(tmp_path, instance, docker_client, busybox_image, spares=0)
    try:
        networks = p.runtime.sandbox.networks
        assert networks.fill_spares() == 0 and networks.start_filling() is None
        assert not docker_client.api.networks(filters={"label": [
            f"gitpaas.instance={instance}", SPARE_LABEL]})
        deploy(p, busybox_image, "victim")
        info = p.runtime.list("victim")[0]
        assert networks_of(docker_client, info) == [f"{instance}.victim"]
        assert p.store.claimed_networks() == {}
    finally:
        for c in p.runtime.list("victim"):
            p.runtime.remove([c], stop_timeout=1)
        p.runtime.remove_network("victim")
        p.routes.close()


def test_a_crash_between_claim_and_first_deploy_leaves_nothing_half_done(
        platform, tmp_path, instance, busybox_image, docker_client):
    """A push claimed a spare (``create_app_for_push``) and the process died before the
    first deploy: the next process's deploy uses that network. A failed first deploy
    removes the claimed network and its claim; the next deploy claims anew."""
    networks = platform.runtime.sandbox.networks
    networks.fill_spares()
    platform.store.create_app("victim", "admin", "main")
    platform.runtime.prepare_network("victim")  # the claim, then "the crash"
    claimed = platform.store.app_network("victim")
    assert claimed is not None and exists(docker_client, claimed)
    again = make_platform(tmp_path, instance, docker_client, busybox_image)
    try:
        deploy(again, busybox_image, "victim")
        assert networks_of(docker_client, again.runtime.list("victim")[0]) == [claimed]
    finally:
        again.routes.close()
    # A first deploy that fails: its claimed network goes, with the claim.
    platform.store.create_app("mal", "admin", "main")
    thread = platform.deployer.prepare_network("mal")
    thread.join()
    lost = platform.store.app_network("mal")
    assert lost is not None
    platform.deployer._drop_unused_network("mal")  # what the failed deploy calls
    assert not exists(docker_client, lost)
    assert platform.store.app_network("mal") is None
    assert lost not in platform.store.claimed_networks()
