"""datastores/postgres.py against the real PostgreSQL: create, isolate, dump, load, drop,
and imports that cannot reach the host."""

from __future__ import annotations

import io

import psycopg
import pytest

from gitpaas.datastores.postgres import Credentials, PostgresDatastores, Server
from gitpaas.errors import Conflict, InvalidInput
from tests.conftest import unique


@pytest.fixture
def datastores(postgres_admin_url):
    ds = PostgresDatastores(Server(postgres_admin_url), unique("t"))
    made: list[str] = []
    real_create = ds.create

    def create(app: str) -> Credentials:
        made.append(app)
        return real_create(app)

    ds.create = create  # type: ignore[method-assign]
    yield ds
    for app in made:
        ds.destroy(*ds.names_for(app))


def connect(creds: Credentials, database: str | None = None):
    return psycopg.connect(host="127.0.0.1", port=creds.port, user=creds.user,
                           password=creds.password, dbname=database or creds.database,
                           connect_timeout=5, autocommit=True)


def test_create_gives_a_private_database_and_destroy_drops_it(datastores):
    a = datastores.create("site-a")
    b = datastores.create("site-b")
    assert a.database == f"{datastores.instance}_site_a" == a.user
    assert a.url().startswith(f"postgres://{a.user}:") and a.port == 5432
    with connect(a) as conn:
        conn.execute("CREATE TABLE t (id INT PRIMARY KEY, v TEXT)")
        conn.execute("INSERT INTO t VALUES (1, 'secret of a')")
    # Another app's role cannot even connect to a's database.
    with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
        connect(b, database=a.database)
    with pytest.raises(Conflict):
        datastores.create("site-a")
    assert datastores.stats(a.database)["tables"] == 1
    datastores.destroy(a.database, a.user)
    with pytest.raises(psycopg.OperationalError):
        connect(a)


def test_export_then_import_round_trips(datastores):
    a = datastores.create("src")
    with connect(a) as conn:
        conn.execute("CREATE TABLE posts (id SERIAL PRIMARY KEY, title TEXT)")
        conn.execute("INSERT INTO posts (title) VALUES ('hello'), ('it''s; \\\\ tricky')")
    chunks: list[bytes] = []
    size = datastores.export(a.database, chunks.append)
    archive = b"".join(chunks)
    assert size == len(archive) and archive.startswith(b"PGDMP")
    b = datastores.create("dst")
    assert datastores.import_(b, io.BytesIO(archive)) == len(archive)
    with connect(b) as conn:
        rows = conn.execute("SELECT title FROM posts ORDER BY id").fetchall()
    assert rows == [("hello",), ("it's; \\\\ tricky",)]


def test_plain_sql_imports_as_the_app_role_all_or_nothing(datastores):
    a = datastores.create("plain")
    sql = b"CREATE TABLE notes (n TEXT);\nINSERT INTO notes VALUES ('one');\n"
    datastores.import_(a, io.BytesIO(sql))
    with pytest.raises(InvalidInput, match="the import failed"):
        datastores.import_(a, io.BytesIO(b"INSERT INTO notes VALUES ('two');\nNOT SQL;\n"))
    with connect(a) as conn:
        assert conn.execute("SELECT n FROM notes").fetchall() == [("one",)]


@pytest.mark.parametrize("dump", [
    b"\\! touch /tmp/gitpaas-pwned\n",
    b"SELECT 1;\n  \\copy notes from '/etc/passwd'\n",
    b"COPY notes (n) FROM stdin;\nx\n\\.\n",
])
def test_psql_commands_are_refused(datastores, dump, tmp_path):
    a = datastores.create("hostile")
    with pytest.raises(InvalidInput, match="psql commands"):
        datastores.import_(a, io.BytesIO(dump))


@pytest.mark.parametrize("statement", [
    "COPY (SELECT 1) TO PROGRAM 'touch /tmp/gitpaas-pwned'",
    "COPY x FROM '/etc/passwd'",
    "CREATE EXTENSION adminpack",
    "ALTER ROLE CURRENT_USER SUPERUSER",
])
def test_the_app_role_cannot_reach_the_host_or_escalate(datastores, statement):
    a = datastores.create("escalate")
    with pytest.raises(InvalidInput, match="the import failed"):
        datastores.import_(a, io.BytesIO(f"CREATE TABLE x (l TEXT);\n{statement};\n".encode()))
