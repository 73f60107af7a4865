"""End-to-end fixtures: a real ``gitpaas serve`` per module, cleaned up afterwards."""

from __future__ import annotations

import shutil

import pytest

from tests.conftest import require
from tests.harness import serving


@pytest.fixture(scope="module")
def clients():
    require(shutil.which("git") is not None, "the git client")
    require(shutil.which("ssh") is not None, "the OpenSSH client")


@pytest.fixture(scope="module")
def server(tmp_path_factory, redis_url, docker_client, clients):
    """A running server with an admin key registered (``server.admin_key``)."""
    with serving(tmp_path_factory.mktemp("server"), redis_url, docker_client) as srv:
        yield srv
