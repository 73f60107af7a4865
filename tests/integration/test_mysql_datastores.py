"""datastores/mysql.py against the real MariaDB: create, isolate, dump, load, drop."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pymysql
import pytest

from gitpaas.datastores import common as common_module
from gitpaas.datastores.mysql import Credentials, MySQLDatastores, Server
from gitpaas.errors import Conflict, InvalidInput
from tests.conftest import unique


@pytest.fixture
def datastores(mysql_admin_url):
    """A MySQLDatastores of a fresh instance; every database it made is dropped after."""
    ds = MySQLDatastores(Server(mysql_admin_url), unique("t"))
    made: list[str] = []
    real_create = ds.create

    def create(app: str) -> Credentials:
        made.append(app)
        return real_create(app)

    ds.create = create  # type: ignore[method-assign]
    yield ds
    for app in made:
        ds.destroy(*ds.names_for(app))


def connect(creds: Credentials, database: str | None = None, host: str = "127.0.0.1"):
    return pymysql.connect(host=host, port=creds.port, user=creds.user,
                           password=creds.password, database=database or creds.database,
                           connect_timeout=5, autocommit=True)


def local(creds: Credentials) -> Credentials:
    """The same credentials, reached over loopback (as gitpaas reaches the server)."""
    return Credentials("127.0.0.1", creds.port, creds.database, creds.user, creds.password)


def test_create_gives_a_private_database_and_destroy_drops_it(datastores):
    a = datastores.create("site-a")
    b = datastores.create("site-b")
    assert a.database == f"{datastores.instance}_site_a" == a.user
    assert a.host == "172.17.0.1" and a.port == 3306
    with connect(a) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE t (id INT PRIMARY KEY, v TEXT)")
        cur.execute("INSERT INTO t VALUES (1, 'secret of a')")
    with pytest.raises(pymysql.err.OperationalError) as denied:
        connect(b, database=a.database)
    assert denied.value.args[0] == 1044  # access denied to database
    with connect(b) as conn, conn.cursor() as cur, pytest.raises(pymysql.MySQLError):
        cur.execute(f"SELECT * FROM `{a.database}`.t")
    with pytest.raises(Conflict):
        datastores.create("site-a")
    assert datastores.stats(a.database)["tables"] == 1
    datastores.destroy(a.database, a.user)
    assert not datastores.database_exists(a.database)
    assert not datastores.user_exists(a.user)
    with pytest.raises(pymysql.err.OperationalError):
        connect(a)
    datastores.destroy(a.database, a.user)  # idempotent


def test_containers_reach_the_server_on_the_docker_gateway(datastores, docker_client,
                                                          busybox_image):
    creds = datastores.create("reach")
    # The greeting is binary: print it as text (json-file logs keep whole lines best).
    # stdin stays open a moment: busybox nc stops reading at stdin's EOF otherwise.
    probe = (f"sleep 2 | nc -w 3 {creds.host} {creds.port} | head -c 200"
             " | tr -c 'A-Za-z0-9_.-' ' '; echo")
    out = docker_client.containers.run(busybox_image, ["sh", "-c", probe], remove=True)
    assert b"mysql_native_password" in out or b"MariaDB" in out


def test_export_then_import_round_trips_and_hides_the_password(datastores, monkeypatch):
    a = datastores.create("src")
    b = datastores.create("dst")
    blob = bytes(range(256))
    with connect(a) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE posts (id INT PRIMARY KEY, title TEXT, body LONGBLOB)"
                    " CHARACTER SET utf8mb4")
        cur.execute("INSERT INTO posts VALUES (1, %s, %s), (2, 'it''s \\\\ here', NULL)",
                    ("Grüße, 世界 🎉", blob))
    seen: list[list[str]] = []
    real_popen = subprocess.Popen

    def spy(argv, *args, **kwargs):
        seen.append(list(argv))
        return real_popen(argv, *args, **kwargs)

    monkeypatch.setattr(common_module.subprocess, "Popen", spy)
    chunks: list[str] = []
    size = datastores.export(a.database, chunks.append)
    dump = "".join(chunks)
    assert size == len(dump.encode()) and "CREATE TABLE `posts`" in dump
    assert "CREATE DATABASE" not in dump and "USE `" not in dump
    loaded = datastores.import_(local(b), io.BytesIO(dump.encode()))
    assert loaded == size
    with connect(b) as conn, conn.cursor() as cur:
        cur.execute("SELECT id, title, body FROM posts ORDER BY id")
        assert cur.fetchall() == ((1, "Grüße, 世界 🎉", blob), (2, "it's \\ here", None))
    flat = " ".join(" ".join(argv) for argv in seen)
    assert len(seen) == 2 and a.password not in flat and b.password not in flat
    assert "--defaults-extra-file=" in flat


def test_import_cannot_touch_another_database(datastores):
    victim = datastores.create("victim")
    attacker = datastores.create("attacker")
    with connect(victim) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE keep (id INT)")
    evil = f"DROP TABLE `{victim.database}`.keep;\n".encode()
    with pytest.raises(InvalidInput, match="import failed"):
        datastores.import_(local(attacker), io.BytesIO(evil))
    assert datastores.stats(victim.database)["tables"] == 1
    with pytest.raises(InvalidInput, match="nothing to import"):
        datastores.import_(local(attacker), io.BytesIO(b""))


@pytest.mark.parametrize("line", ["\\! touch {marker}\n", "system touch {marker}\n",
                                  "source /etc/hostname\n"])
def test_import_runs_no_client_commands_on_the_host(datastores, tmp_path, line):
    """The mysql client's own commands (shell escapes, source FILE) are refused."""
    marker = tmp_path / "pwned"
    app = datastores.create("sandboxed")
    dump = f"CREATE TABLE t (id INT);\n{line.format(marker=marker)}".encode()
    with pytest.raises(InvalidInput) as info:
        datastores.import_(local(app), io.BytesIO(dump))
    assert not marker.exists()
    assert Path("/etc/hostname").read_text().strip() not in str(info.value)


def test_mariadb_listens_on_loopback_and_the_docker_gateway_only():
    """App databases are reachable from containers, not from beyond the machine."""
    listening = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, port = local.split(":")
        if state == "0A" and int(port, 16) == 3306:
            listening.add(".".join(str(b) for b in reversed(bytes.fromhex(address))))
    v6 = [line for line in Path("/proc/net/tcp6").read_text().splitlines()[1:]
          if line.split()[3] == "0A" and line.split()[1].endswith(":0CEA")]
    assert listening and listening <= {"127.0.0.1", "172.17.0.1"} and not v6, listening
