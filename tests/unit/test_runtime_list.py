"""Listing containers while a retirement removes some must not fail (found by tests/load:
``config:set`` failed with "Docker is unavailable: 404 ... No such container")."""

from __future__ import annotations

import docker.errors

from gitpaas.runtime import DockerRuntime


class Container:
    def __init__(self, cid: str) -> None:
        self.id, self.name, self.status = cid, f"i.shop.v1.web.{cid}", "running"
        self.labels = {"gitpaas.app": "shop", "gitpaas.release": "1",
                       "gitpaas.process": "web", "gitpaas.replica": cid}
        self.attrs = {"NetworkSettings": {"Ports": {"5000/tcp": [{"HostPort": "8000"}]}},
                      "State": {"StartedAt": ""}, "RestartCount": 0}


class Api:
    def containers(self, all: bool, filters: dict) -> list[dict]:  # noqa: A002 - docker's
        return [{"Id": "1"}, {"Id": "2"}]


class Containers:
    def get(self, cid: str) -> Container:
        if cid == "2":  # listed, then removed by a retirement before it is inspected
            raise docker.errors.NotFound("No such container: 2")
        return Container(cid)


class Client:
    api = Api()
    containers = Containers()


def test_a_container_removed_meanwhile_is_skipped():
    infos = DockerRuntime(Client(), "i").list("shop")
    assert [i.id for i in infos] == ["1"] and infos[0].port == 8000
