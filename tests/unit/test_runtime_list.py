"""``runtime.list`` builds from Docker's summaries and keeps only containers gitpaas made
(issue 11, finding 2: a build's intermediate container carries the Dockerfile's labels)."""

from __future__ import annotations

from gitpaas.runtime import DockerRuntime
from gitpaas.runtime.docker import owned

LABELS = {"gitpaas.instance": "i", "gitpaas.app": "shop", "gitpaas.release": "1",
          "gitpaas.process": "web", "gitpaas.replica": "1"}


def summary(name: str, **labels: str) -> dict:
    return {"Id": name, "Names": [f"/{name}"], "State": "running",
            "Labels": {**LABELS, **labels},
            "Ports": [{"IP": "127.0.0.1", "PrivatePort": 5000, "PublicPort": 8000,
                       "Type": "tcp"}]}


class Api:
    def __init__(self, found: list[dict]) -> None:
        self.found, self.calls = found, 0

    def containers(self, all: bool, filters: dict) -> list[dict]:  # noqa: A002 - docker's
        self.calls += 1
        return self.found


class Client:
    def __init__(self, found: list[dict]) -> None:
        self.api = Api(found)


def test_one_call_and_the_port_from_the_summary():
    client = Client([summary("i.shop.v1.web.1")])
    infos = DockerRuntime(client, "i").list("shop")
    assert [(i.name, i.port, i.status) for i in infos] == [("i.shop.v1.web.1", 8000, "running")]
    assert client.api.calls == 1


def test_a_container_whose_name_does_not_match_its_labels_is_not_ours():
    forged = [summary("eager_tesla"),  # a build's intermediate container
              summary("i.shop.v1.web.2"),  # labels say replica 1
              summary("i.shop.v1.web.1", **{"gitpaas.instance": "other"}),
              summary("i.shop.v\u0661.web.1", **{"gitpaas.release": "\u0661"}),
              summary("i.shop.v1.web.1", **{"gitpaas.replica": "x"})]
    assert DockerRuntime(Client(forged), "i").list() == []
    assert not any(owned("i", s) for s in forged)
    assert owned("i", summary("i.shop.v1.web.1"))


def test_run_containers_have_a_random_suffix_and_a_creation_time():
    run = {**summary("i.shop.v1.run.0a1b2c3d", **{"gitpaas.oneoff": "run",
                                                  "gitpaas.replica": "0"}),
           "Created": 1_700_000_000}
    assert owned("i", run)
    assert not owned("i", {**run, "Names": ["/i.shop.v1.run.zz"]})
    assert not owned("i", {**run, "Names": ["/i.shop.v1.web.0a1b2c3d"]})
    info = DockerRuntime(Client([run]), "i").list()[0]
    assert info.oneoff == "run" and info.started_at == "2023-11-14T22:13:20Z"
