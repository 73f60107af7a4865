"""Issue 16: losing a swarm node loses no request (the edge retries another replica) and
Swarm starts the lost replicas on the nodes left; the routes follow.

Its own module (and swarm): the test stops a node container for good.
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


def backends(srv, app: str) -> list[str]:
    routes = json.loads(srv.ssh("routes", app, "--json").stdout)
    return routes.get(f"{srv.instance}:frontend:{srv.host(app)}", [])[1:]


def test_stopping_a_node_keeps_serving_and_swarm_reschedules(srv, busybox_image, tmp_path,
                                                             docker_client):
    repo = make_repo(tmp_path / "ha", swarm_app(busybox_image))
    pushed = srv.push(repo, "ha")
    assert pushed.returncode == 0, pushed.stderr
    assert srv.ssh("ps:scale", "ha", "web=3").returncode == 0
    assert wait_for(lambda: len(backends(srv, "ha")) == 3, 30)
    lost = srv.cluster.nodes[1]  # node2, a worker
    assert "node2" in {node_of(srv, t) for t in web_tasks(srv, "ha")}
    load = Load(srv, srv.host("ha"), limit=4000, seconds=300)
    load.start()
    try:
        wait_for(lambda: load.ok >= 5, 30)
        docker_client.api.stop(lost.container_id, timeout=1)
        # Swarm sees the node down and starts its replica on node1 or node3 ...
        assert wait_for(lambda: len(web_tasks(srv, "ha")) == 3 and "node2" not in {
            node_of(srv, t) for t in web_tasks(srv, "ha")}, 120, interval=1.0)
        # ... and the routes follow: three backends, none on the lost node.
        assert wait_for(lambda: len(backends(srv, "ha")) == 3 and all(
            f"//{lost.ip}:" not in b for b in backends(srv, "ha")), 30)
        served_after = load.ok
        assert wait_for(lambda: load.ok >= served_after + 20, 30)
    finally:
        load.finish()
    assert load.failed == [] and load.ok > 40
    status = {r["hostname"]: r["state"] for r in json.loads(srv.ssh("hosts", "--json").stdout)}
    assert status == {"node1": "ready", "node2": "down", "node3": "ready"}
    doctor = srv.gitpaas("doctor")
    assert f"node node2 ({lost.ip}) is down" in doctor.stdout + doctor.stderr
    assert "registry" not in doctor.stdout + doctor.stderr
