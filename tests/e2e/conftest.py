"""End-to-end fixtures: a real ``gitpaas serve`` per module, cleaned up afterwards."""

from __future__ import annotations

import shutil

import pytest

from tests.conftest import require, unique
from tests.harness import Server


@pytest.fixture(scope="module")
def clients():
    require(shutil.which("git") is not None, "the git client")
    require(shutil.which("ssh") is not None, "the OpenSSH client")


@pytest.fixture(scope="module")
def server(tmp_path_factory, redis_url, docker_client, clients):
    """A running server with an admin key registered (``server.admin_key``)."""
    import redis

    root = tmp_path_factory.mktemp("server")
    srv = Server(root=root, instance=unique("e"), redis_url=redis_url)
    srv.admin_key = srv.add_key("admin")
    srv.start()
    yield srv
    srv.cleanup(docker_client)
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match=f"{srv.instance}:*", count=1000):
        client.delete(key)
    client.close()
