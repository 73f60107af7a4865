"""A per-app Redis into a backup and back (real Docker, the gitpaas-base/redis image): the
snapshot is a BGSAVE copied out of the container; a restore starts the app's Redis anew
with the restored password and that data, append-only on again (a restart keeps it)."""

from __future__ import annotations

import io

import pytest
import redis

from gitpaas import settings as settings_mod
from gitpaas.platform import Platform

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def platform(tmp_path, instance, docker_client, base_images):
    p = Platform(settings_mod.load({"data_dir": tmp_path / "data", "instance": instance},
                                   environ={}))
    p.__dict__["docker"] = docker_client
    yield p
    for app in ("cache",):
        p.redis_stores.destroy(app)


def connect(platform, app: str, password: str, db: int = 0) -> redis.Redis:
    return redis.Redis(host=platform.redis_stores.address(app), port=6379, db=db,
                       password=password, socket_timeout=10)


def test_a_snapshot_restores_every_key_type_ttl_and_database(platform, docker_client):
    stores = platform.redis_stores
    creds = stores.create("cache")
    stores.wait_ready("cache", creds.password)
    client = connect(platform, "cache", creds.password)
    client.set("greeting", "hi")
    client.set("session", "s1", ex=3600)
    client.rpush("queue", "a", "b", "c")
    client.hset("user:1", mapping={"name": "ann", "plan": "pro"})
    client.zadd("scores", {"ann": 3, "bob": 1})
    client.set("blob", bytes(range(256)))
    connect(platform, "cache", creds.password, db=3).set("other-db", "yes")

    out = io.BytesIO()
    size = stores.export_rdb("cache", creds.password, out.write)
    rdb = out.getvalue()
    assert size == len(rdb) > 0 and rdb.startswith(b"REDIS")
    assert creds.password.encode() not in rdb
    client.set("after-the-snapshot", "x")  # not in it

    stores.destroy("cache")  # a lost machine: container and volume gone
    assert not docker_client.volumes.list(filters={"name": stores.name("cache")})
    stores.restore("cache", creds.password, io.BytesIO(rdb))
    again = connect(platform, "cache", creds.password)
    assert again.get("greeting") == b"hi" and again.lrange("queue", 0, -1) == [b"a", b"b",
                                                                              b"c"]
    assert again.hgetall("user:1") == {b"name": b"ann", b"plan": b"pro"}
    assert again.zrange("scores", 0, -1, withscores=True) == [(b"bob", 1.0), (b"ann", 3.0)]
    assert again.get("blob") == bytes(range(256)) and not again.exists("after-the-snapshot")
    assert 3500 < again.ttl("session") <= 3600
    assert connect(platform, "cache", creds.password, db=3).get("other-db") == b"yes"
    assert again.config_get("appendonly") == {"appendonly": "yes"}
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host=stores.address("cache"), port=6379, password="wrong").ping()

    # Append-only from now on, and the config file says so: a restart keeps the data,
    # including what was written after the restore.
    again.set("after-the-restore", "kept")
    container = docker_client.containers.get(stores.name("cache"))
    container.restart(timeout=10)
    stores.wait_ready("cache", creds.password)
    final = connect(platform, "cache", creds.password)
    assert final.get("greeting") == b"hi" and final.get("after-the-restore") == b"kept"
    assert final.config_get("appendonly") == {"appendonly": "yes"}
    assert creds.password not in str(container.attrs["Config"])


def test_a_restore_without_a_snapshot_starts_an_empty_redis(platform):
    stores = platform.redis_stores
    creds = stores.restore("cache", "a" * 32, None)
    assert creds.password == "a" * 32
    stores.wait_ready("cache", creds.password)
    client = connect(platform, "cache", creds.password)
    assert client.dbsize() == 0 and client.config_get("appendonly") == {"appendonly": "yes"}
