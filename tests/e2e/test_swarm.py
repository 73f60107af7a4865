"""Issue 16: the same push deploys across the nodes of a Docker Swarm (``runtime: swarm``).

A real ``git push`` over SSH into ``gitpaas serve`` whose runtime is a three-node swarm
(node containers running Debian's dockerd, tests/swarmkit.py); the edge on the host
reaches every replica at its node's address.
"""

from __future__ import annotations

import json

import pytest

from tests.e2e.swarmkit_e2e import Load, node_of, swarm_app, swarm_serving, web_tasks
from tests.harness import make_repo, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def srv(tmp_path_factory, redis_url, docker_client, clients):
    with swarm_serving(tmp_path_factory.mktemp("swarm"), redis_url, docker_client) as made:
        yield made


@pytest.fixture(scope="module")
def shop(srv, busybox_image, tmp_path_factory):
    """The app ``shop`` pushed and scaled to web=3."""
    repo = make_repo(tmp_path_factory.mktemp("shop") / "shop", swarm_app(busybox_image))
    pushed = srv.push(repo, "shop")
    assert pushed.returncode == 0, pushed.stderr
    scaled = srv.ssh("ps:scale", "shop", "web=3")
    assert scaled.returncode == 0, scaled.stderr
    return "shop"


def bodies_through_edge(srv, app: str, want: int, tries: int = 90) -> set[str]:
    seen: set[str] = set()
    for _ in range(tries):
        status, body = srv.get(srv.host(app))
        assert status == 200, body
        seen.add(body.strip())
        if len(seen) >= want:
            break
    return seen


def test_a_push_deploys_web3_over_three_nodes_each_answering_through_the_edge(srv, shop):
    tasks = web_tasks(srv, shop)
    assert len(tasks) == 3
    assert sorted(node_of(srv, t) for t in tasks) == ["node1", "node2", "node3"]
    routes = json.loads(srv.ssh("routes", shop, "--json").stdout)
    backends = routes[f"{srv.instance}:frontend:{srv.host(shop)}"][1:]
    assert sorted(b.split("//")[1].split(":")[0] for b in backends) == sorted(
        n.ip for n in srv.cluster.nodes)
    seen = bodies_through_edge(srv, shop, 3)
    assert {b.split()[0] for b in seen} == {"web.1", "web.2", "web.3"}


def test_an_image_built_on_the_host_runs_on_nodes_that_never_built_it(srv, shop,
                                                                       docker_client):
    image = f"{srv.instance}/{shop}:v1"  # built by the push; v2 (the scale) reuses it
    local = docker_client.images.get(image)
    ref = f"{srv.registry}/{image}"
    for node in srv.cluster.nodes:
        pulled = node.client.images.get(ref)
        assert pulled.id == local.id  # the very image the host built, pulled from the registry
        # nothing was built there: the node holds no build of the app under its own name
        assert not node.client.images.list(name=image.split(":")[0])


def test_hosts_lists_the_nodes_and_add_prints_the_join_command(srv, shop):
    listed = srv.ssh("hosts", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [(r["hostname"], r["role"], r["state"], r["availability"]) for r in rows] == [
        ("node1", "manager", "ready", "active"), ("node2", "worker", "ready", "active"),
        ("node3", "worker", "ready", "active")]
    # (the previous release's replicas may be retiring still)
    assert wait_for(lambda: all(r["runs"].get(f"{shop}.web") == 1 for r in json.loads(
        srv.ssh("hosts", "--json").stdout)), 30), srv.ssh("hosts").stdout
    text = srv.ssh("hosts").stdout
    assert "node2" in text and f"{shop}.web=1" in text
    added = srv.ssh("hosts:add")
    assert added.returncode == 0, added.stderr
    assert "docker swarm join --token SWMTKN-" in added.stdout
    assert f"{srv.cluster.manager.ip}:2377" in added.stdout
    assert f"/etc/docker/certs.d/{srv.registry}/ca.crt" in added.stdout
    assert "BEGIN CERTIFICATE" in added.stdout
    # the daemon.json the test nodes run with (no-new-privileges), and no registry secret
    assert """echo '{"no-new-privileges": true}' > /etc/docker/daemon.json""" in added.stdout
    password = (srv.data_dir / "registry" / "auth" / "password").read_text().strip()
    assert password not in added.stdout + added.stderr
    logs = [srv.root / "serve.log", srv.data_dir / "registry" / "registry.log"]
    assert not [p for p in logs if password in p.read_text(errors="replace")]


def test_hosts_is_for_admins_only(srv, shop):
    key = srv.add_key("tenant")
    denied = srv.ssh("hosts", key=key)
    assert denied.returncode != 0


def test_config_set_rolls_every_replica_with_no_failed_request(srv, shop):
    load = Load(srv, srv.host(shop), limit=3000, seconds=240)
    load.start()
    try:
        wait_for(lambda: load.ok >= 5, 30)
        done = srv.ssh("config:set", shop, "GREETING=rolled-s3cr3t")
        assert done.returncode == 0, done.stderr
        assert wait_for(lambda: all(b.split()[-1] == "rolled-s3cr3t"
                                    for b in load.bodies[-20:]), 30)
    finally:
        load.finish()
    assert load.failed == []
    assert load.ok > 20
    assert len(web_tasks(srv, shop)) == 3
    service = json.dumps(srv.cluster.manager.client.api.services(
        filters={"label": [f"gitpaas.instance={srv.instance}"]}))
    assert "rolled-s3cr3t" not in service and "GREETING=" not in service


def test_hosts_drain_moves_replicas_with_no_failed_request(srv, shop):
    load = Load(srv, srv.host(shop), limit=3000, seconds=240)
    load.start()
    try:
        wait_for(lambda: load.ok >= 5, 30)
        drained = srv.ssh("hosts:drain", "node3")
        assert drained.returncode == 0, drained.stderr
        assert "done" in drained.stdout
        assert wait_for(lambda: len(web_tasks(srv, shop)) == 3
                        and "node3" not in {node_of(srv, t) for t in web_tasks(srv, shop)}, 60)
        routes = json.loads(srv.ssh("routes", shop, "--json").stdout)
        node3 = srv.cluster.nodes[2].ip
        assert wait_for(lambda: len(json.loads(srv.ssh("routes", shop, "--json").stdout)[
            f"{srv.instance}:frontend:{srv.host(shop)}"]) == 4, 30)
        assert all(f"//{node3}:" not in b for b in routes[
            f"{srv.instance}:frontend:{srv.host(shop)}"][1:])
    finally:
        load.finish()
        srv.ssh("hosts:activate", "node3")
        # Swarm does not move replicas back by itself: a new release spreads them again.
        srv.ssh("ps:restart", shop)
    assert load.failed == []
    events = json.loads(srv.ssh("events", "--json").stdout)
    assert [(e["action"], e["detail"]) for e in events if e["action"].startswith("hosts")][
        :2] == [("hosts:activate", "node3"), ("hosts:drain", "node3")]


def test_storage_pins_the_app_to_one_node(srv, busybox_image, tmp_path):
    repo = make_repo(tmp_path / "files", swarm_app(busybox_image))
    assert srv.push(repo, "files").returncode == 0
    mounted = srv.ssh("storage:mount", "files", "data:/data")
    assert mounted.returncode == 0, mounted.stderr
    scaled = srv.ssh("ps:scale", "files", "web=2")
    assert scaled.returncode == 0, scaled.stderr
    listed = srv.ssh("storage", "files").stdout
    pinned = listed.split("pinned to node ")[1].split(":")[0]
    assert pinned in {"node1", "node2", "node3"}
    assert f"pinned to node {pinned}" in srv.ssh("ps", "files").stdout
    assert json.loads(srv.ssh("ps", "files", "--json").stdout)["pinned_to"] == pinned
    tasks = web_tasks(srv, "files")
    assert len(tasks) == 2 and {node_of(srv, t) for t in tasks} == {pinned}
    # both replicas share the one volume on that node
    node = next(n for n in srv.cluster.nodes if n.hostname == pinned)
    assert any(v.name.endswith(".files.data") for v in node.client.volumes.list())
    # a backup cannot reach that node's volume: it says so, and its manifest records it
    backed = srv.ssh("backups:create")
    assert backed.returncode == 0, backed.stderr
    assert (f"files: its storage is on node {pinned}, not in this backup"
            in backed.stdout + backed.stderr)
    destroyed = srv.ssh("apps:destroy", "files", "--confirm", "files")
    assert destroyed.returncode == 0, destroyed.stderr
    labels = [n.attrs["Spec"].get("Labels") or {} for n in srv.cluster.manager.client.nodes.list()]
    assert not any(k.endswith("-files") for lab in labels for k in lab)


def test_the_reconciler_starts_a_removed_service_again_and_routes_it(srv, busybox_image,
                                                                      tmp_path):
    repo = make_repo(tmp_path / "gone", swarm_app(busybox_image))
    assert srv.push(repo, "gone").returncode == 0
    before = web_tasks(srv, "gone")
    assert len(before) == 1
    name = f"{srv.instance}_gone_v1_web"
    srv.cluster.manager.client.api.remove_service(name)  # an operator's mistake
    assert wait_for(lambda: [t["ID"] for t in web_tasks(srv, "gone")] not in ([], [
        before[0]["ID"]]), 60)
    routes = json.loads(srv.ssh("routes", "gone", "--json").stdout)
    backend = routes[f"{srv.instance}:frontend:{srv.host('gone')}"][1:]
    task = web_tasks(srv, "gone")[0]
    port = task["Status"]["PortStatus"]["Ports"][0]["PublishedPort"]
    assert wait_for(lambda: json.loads(srv.ssh("routes", "gone", "--json").stdout)[
        f"{srv.instance}:frontend:{srv.host('gone')}"][1:] == [
        f"http://{next(n.ip for n in srv.cluster.nodes if n.hostname == node_of(srv, task))}"
        f":{port}"], 30), backend
    assert srv.get(srv.host("gone"))[0] == 200
