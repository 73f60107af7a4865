"""HTTPS on an extra edge host, end to end: a real ``gitpaas serve`` (certs:add and
certs:remove over the real OpenSSH client, its certificate manager's pass at start) and a
real ``gitpaas router`` with a data dir of its own, sharing only Redis."""

from __future__ import annotations

import time

import pytest

from tests.conftest import unique
from tests.harness import Server
from tests.integration.test_edge_certsync import leaf_of, router, served, wait_served
from tests.unit.test_certs import make_cert

pytestmark = pytest.mark.timeout(600)
DAY = 86400.0


def test_the_router_serves_serves_certificates_with_redis_only(
        tmp_path, redis_url, docker_client, clients):
    srv = Server(root=tmp_path / "server", instance=unique("e"), redis_url=redis_url)
    # A certificate from before certificates were copied to Redis (an admin's, by hand):
    # serve's pass at start copies it.
    certs_dir = srv.data_dir / "edge" / "certs"
    certs_dir.mkdir(parents=True)
    old_chain, old_key = make_cert(["legacy.example"], time.time() + 60 * DAY)
    (certs_dir / "legacy.example.crt").write_bytes(old_chain)
    (certs_dir / "legacy.example.key").write_bytes(old_key)
    try:
        srv.admin_key = srv.add_key("admin")
        srv.start()
        router_dir = tmp_path / "router-data"
        router_dir.mkdir()
        with router(redis_url, srv.instance, router_dir) as (proc, _, https):
            wait_served(https, "legacy.example", leaf_of(old_chain), timeout=10)

            assert srv.ssh("apps:create", "edgeshop").returncode == 0
            assert srv.ssh("domains:add", "edgeshop", "www.edgeshop.example").returncode == 0
            chain, key = make_cert(["www.edgeshop.example"], time.time() + 60 * DAY)
            added = srv.ssh("certs:add", "edgeshop", input=(chain + key).decode())
            assert added.returncode == 0, added.stderr
            wait_served(https, "www.edgeshop.example", leaf_of(chain))
            files = router_dir / "edge" / "certs"
            assert (files / "www.edgeshop.example.key").exists()

            removed = srv.ssh("certs:remove", "edgeshop", "www.edgeshop.example")
            assert removed.returncode == 0, removed.stderr
            wait_served(https, "www.edgeshop.example", None)
            assert not (files / "www.edgeshop.example.key").exists()
            assert served(https, "legacy.example") == leaf_of(old_chain)

            for pem in (key, old_key):
                body = pem.decode().splitlines()[1]
                assert body not in proc.output and body not in srv.log()
    finally:
        srv.cleanup(docker_client)
