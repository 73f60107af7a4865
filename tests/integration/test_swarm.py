"""The swarm test cluster itself: three node containers, one manager, all ready."""

from __future__ import annotations

import pytest

from tests.swarmkit import swarm_cluster

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def cluster(docker_client):
    with swarm_cluster(docker_client, 3) as made:
        yield made


def test_three_nodes_one_manager(cluster):
    nodes = cluster.manager.client.nodes.list()
    assert sorted(n.attrs["Description"]["Hostname"] for n in nodes) == [
        "node1", "node2", "node3"]
    managers = [n for n in nodes if n.attrs["Spec"]["Role"] == "manager"]
    assert [m.attrs["Description"]["Hostname"] for m in managers] == ["node1"]
    assert {n.attrs["Status"]["Addr"] for n in nodes} == {n.ip for n in cluster.nodes}
    assert all(n.client.info()["Driver"] == "overlay2" for n in cluster.nodes)
