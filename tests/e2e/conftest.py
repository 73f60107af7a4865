"""End-to-end fixtures: a real ``gitpaas serve`` per module, cleaned up afterwards."""

from __future__ import annotations

import shutil

import pytest

from gitpaas import images
from gitpaas.datastores.mysql import MySQLDatastores
from gitpaas.datastores.mysql import Server as MySQLServer
from gitpaas.settings import Settings
from tests.conftest import require
from tests.harness import HAS_ROUTER, serving
from tests.webhook import webhook_receiver


@pytest.fixture(scope="module")
def clients():
    require(shutil.which("git") is not None, "the git client")
    require(shutil.which("ssh") is not None, "the OpenSSH client")


@pytest.fixture(scope="module")
def webhook():
    """``(url, received)`` of a webhook receiver (``tests.webhook``) for the module."""
    with webhook_receiver() as hook:
        yield hook


@pytest.fixture(scope="module")
def server(tmp_path_factory, redis_url, docker_client, clients):
    """A running server with an admin key registered (``server.admin_key``)."""
    with serving(tmp_path_factory.mktemp("server"), redis_url, docker_client) as srv:
        yield srv


@pytest.fixture(scope="module")
def wordpress_image(docker_client):
    require(shutil.which("mmdebstrap") is not None, "mmdebstrap (Debian package mmdebstrap)")
    images.build_images(Settings(), ["wordpress"], progress=lambda _: None,
                        client=docker_client)
    return images.recipe_image_name(images.load_recipe("wordpress"))


@pytest.fixture(scope="module")
def wp_server(tmp_path_factory, redis_url, docker_client, mysql_admin_url, clients):
    """A server with MySQL datastores configured; its databases dropped afterwards."""
    require(HAS_ROUTER, "the router")
    env = {"GITPAAS_MYSQL_ADMIN_URL": mysql_admin_url, "GITPAAS_HEALTH_TIMEOUT": "60"}
    with serving(tmp_path_factory.mktemp("wp"), redis_url, docker_client, "w", env) as srv:
        try:
            yield srv
        finally:
            drop_instance_databases(mysql_admin_url, srv.instance)


def drop_instance_databases(admin_url: str, instance: str) -> None:
    """Drop whatever databases and users of ``instance`` a failed test left behind."""
    ds = MySQLDatastores(MySQLServer(admin_url), instance)
    with ds._admin() as cur:
        cur.execute("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME"
                    " LIKE %s", (f"{instance}\\_%",))
        databases = [r[0] for r in cur.fetchall()]
        cur.execute("SELECT User FROM mysql.user WHERE User LIKE %s", (f"{instance}\\_%",))
        users = [r[0] for r in cur.fetchall()]
    for name in set(databases) | set(users):
        ds.destroy(name, name)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """``item.rep_setup``/``rep_call``: fixtures may keep artifacts when a test failed."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
