"""Backups end to end: two apps (one with a MySQL database and a storage directory holding
an uploaded file, the other with a PostgreSQL database and a Redis of its own), config,
``backups:create`` over ssh, then everything this instance made is destroyed (data dir,
containers, images, Redis keys, databases, the app's Redis container and volume) and
``backups:restore latest`` brings both apps back with the same pages, config and data.
Real restic, Docker, Redis, MariaDB, PostgreSQL, git, OpenSSH."""

from __future__ import annotations

import json
import time
from urllib.parse import urlparse

import psycopg
import pymysql
import pytest
import redis

from tests.conftest import require
from tests.e2e.conftest import drop_instance_databases
from tests.e2e.test_postgres import drop_instance as drop_instance_postgres
from tests.e2e.test_push import httpd_app
from tests.harness import HAS_ROUTER, make_repo, serving

pytestmark = pytest.mark.timeout(900)


def shop_app(image: str) -> dict[str, str]:
    """httpd serving /www, the GREETING config var at /greeting.txt, storage at /www/files."""
    return {
        "Dockerfile": f"FROM {image}\nCOPY index.html /www/index.html\n"
                      'CMD ["/bin/sh", "-c", "echo \\"$GREETING\\" > /www/greeting.txt;'
                      ' exec /bin/httpd -f -p 5000 -h /www"]\n',
        "index.html": "shop v1\n",
    }


def app_db(url: str):
    p = urlparse(url)
    return pymysql.connect(host="127.0.0.1", port=urlparse(url).port or 3306,
                           user=p.username, password=p.password, database=p.path.lstrip("/"),
                           autocommit=True, connect_timeout=10)


def pg_db(url: str):
    p = urlparse(url)
    return psycopg.connect(host="127.0.0.1", port=p.port or 5432, user=p.username,
                           password=p.password, dbname=p.path.lstrip("/"), autocommit=True,
                           connect_timeout=10)


def app_redis(srv, docker_client, app: str) -> redis.Redis:
    """The app's own Redis (``redis:create``), reached at its container's address."""
    url = urlparse(srv.ssh("config:get", app, "REDIS_URL").stdout.strip())
    container = docker_client.containers.get(url.hostname)
    address = next(iter(container.attrs["NetworkSettings"]["Networks"].values()))["IPAddress"]
    return redis.Redis(host=address, port=6379, password=url.password, socket_timeout=10)


def pages(srv) -> dict[str, tuple[int, str]]:
    shop, blog = srv.host("shop"), srv.host("blog")
    return {f"{host}{path}": srv.get(host, path)
            for host, path in ((shop, "/"), (shop, "/greeting.txt"),
                               (shop, "/files/upload.txt"), (blog, "/"),
                               (blog, "/greeting.txt"))}


def destroy_everything(srv, docker_client, redis_url: str, mysql_admin_url: str,
                       postgres_admin_url: str) -> None:
    """What a lost machine loses: every container, image, Redis key, database and the
    data dir of this instance (and nothing of anyone else's)."""
    srv.cleanup(docker_client)
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match=f"{srv.instance}:*", count=1000):
        client.delete(key)
    client.close()
    drop_instance_databases(mysql_admin_url, srv.instance)
    drop_instance_postgres(postgres_admin_url, srv.instance)
    assert not srv.data_dir.exists()
    label = f"gitpaas.instance={srv.instance}"
    assert not docker_client.containers.list(all=True, filters={"label": label})


def test_backup_then_restore_onto_an_empty_machine(tmp_path_factory, redis_url, docker_client,
                                                   mysql_admin_url, postgres_admin_url,
                                                   clients, busybox_image, base_images):
    require(HAS_ROUTER, "the router")
    root = tmp_path_factory.mktemp("backups")
    password = root / "backup.password"
    password.write_text("a long backup passphrase kept off the machine\n")
    env = {"GITPAAS_MYSQL_ADMIN_URL": mysql_admin_url,
           "GITPAAS_POSTGRES_ADMIN_URL": postgres_admin_url,
           "GITPAAS_BACKUP_REPO": str(root / "restic-repo"),
           "GITPAAS_BACKUP_PASSWORD_FILE": str(password), "GITPAAS_BACKUP_SCHEDULE": "off"}
    (root / "srv").mkdir()
    with serving(root / "srv", redis_url, docker_client, "bk", env) as srv:
        try:
            _scenario(srv, root, docker_client, redis_url, mysql_admin_url,
                      postgres_admin_url, busybox_image)
        finally:
            drop_instance_databases(mysql_admin_url, srv.instance)
            drop_instance_postgres(postgres_admin_url, srv.instance)


def _scenario(srv, root, docker_client, redis_url, mysql_admin_url, postgres_admin_url,
              busybox_image) -> None:
    for argv in (("apps:create", "shop"), ("storage:mount", "shop", "files:/www/files"),
                 ("mysql:create", "shop"), ("config:set", "shop", "GREETING=hello-shop"),
                 ("apps:create", "blog"), ("postgres:create", "blog"),
                 ("redis:create", "blog"),
                 ("config:set", "blog", "GREETING=hi-blog")):
        result = srv.ssh(*argv)
        assert result.returncode == 0, (argv, result.stderr)
    assert srv.push(make_repo(root / "shop", shop_app(busybox_image)), "shop").returncode == 0
    blog = httpd_app(busybox_image, "blog v1\n")
    blog["Dockerfile"] = shop_app(busybox_image)["Dockerfile"]
    assert srv.push(make_repo(root / "blog", blog), "blog").returncode == 0
    # An upload, written by the app's own container into its storage directory.
    web = docker_client.containers.list(filters={"label": [f"gitpaas.instance={srv.instance}",
                                                           "gitpaas.app=shop"]})[0]
    assert web.exec_run(["/bin/sh", "-c", "echo uploaded-by-a-user > /www/files/upload.txt"]
                        ).exit_code == 0
    url = json.loads(srv.ssh("mysql:info", "shop", "--reveal", "--json").stdout)["url"]
    with app_db(url) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE orders (id INT PRIMARY KEY, item VARCHAR(40))")
        cur.execute("INSERT INTO orders VALUES (1, 'teapot'), (2, 'kettle')")
    pg_url = json.loads(srv.ssh("postgres:info", "blog", "--reveal", "--json").stdout)["url"]
    with pg_db(pg_url) as conn:
        conn.execute("CREATE TABLE posts (id INT PRIMARY KEY, title TEXT)")
        conn.execute("INSERT INTO posts VALUES (1, 'hello world'), (2, 'second post')")
    cache = app_redis(srv, docker_client, "blog")
    cache.set("visits", 41)
    cache.rpush("jobs", "email", "resize")
    before = pages(srv)
    assert before[f"{srv.host('shop')}/files/upload.txt"] == (200, "uploaded-by-a-user\n")
    assert before[f"{srv.host('shop')}/greeting.txt"] == (200, "hello-shop\n")
    assert before[f"{srv.host('blog')}/greeting.txt"] == (200, "hi-blog\n")

    created = srv.ssh("backups:create")  # as the admin, over ssh
    assert created.returncode == 0, created.stderr
    assert "Snapshot" in created.stdout and "2 apps" in created.stdout
    listed = json.loads(srv.gitpaas("backups", "--json").stdout)
    assert len(listed) == 1 and created.stdout.count(listed[0]["short_id"]) >= 1
    password = str(root / "backup.password")
    assert password not in srv.log() and "passphrase" not in srv.log()

    srv.stop()
    refused = srv.gitpaas("backups:restore", "latest")  # over a live install: refused
    assert refused.returncode == 1 and "has 2 apps already" in refused.stderr
    destroy_everything(srv, docker_client, redis_url, mysql_admin_url, postgres_admin_url)
    with pytest.raises(pymysql.MySQLError):
        app_db(url).close()
    with pytest.raises(psycopg.Error):
        pg_db(pg_url).close()
    start = time.monotonic()
    restored = srv.gitpaas("backups:restore", "latest")
    assert restored.returncode == 0, restored.stderr + restored.stdout
    assert "Restored 2 apps (blog, shop)" in restored.stdout
    assert "Rebuilding" in restored.stdout  # the images were gone
    srv.start()
    deadline = time.monotonic() + 60
    while pages(srv) != before and time.monotonic() < deadline:
        time.sleep(0.5)
    assert pages(srv) == before, restored.stdout
    print(f"restore took {time.monotonic() - start:.1f} s")
    with app_db(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT id, item FROM orders ORDER BY id")
        assert cur.fetchall() == ((1, "teapot"), (2, "kettle"))
    with pg_db(pg_url) as conn:
        rows = conn.execute("SELECT id, title FROM posts ORDER BY id").fetchall()
        assert rows == [(1, "hello world"), (2, "second post")]
    cache = app_redis(srv, docker_client, "blog")  # the restored one, a new container
    assert cache.get("visits") == b"41" and cache.lrange("jobs", 0, -1) == [b"email",
                                                                           b"resize"]
    assert cache.incr("visits") == 42
    assert srv.ssh("config:get", "shop", "GREETING").stdout.strip() == "hello-shop"
    assert srv.ssh("config:get", "blog", "GREETING").stdout.strip() == "hi-blog"
    events = srv.gitpaas("events", "--json").stdout
    assert '"backups:restore"' in events  # the snapshot predates its own event
    # The restored apps keep working: a config change rolls out a new release.
    assert srv.ssh("config:set", "blog", "GREETING=again").returncode == 0
    assert srv.get(srv.host("blog"), "/greeting.txt") == (200, "again\n")
