"""postgres:* end to end: a Django-like app migrates in its release phase against the
DATABASE_URL that postgres:create set, and another app's credentials are refused there."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import psycopg
import pytest

from tests.harness import make_repo, serving

pytestmark = pytest.mark.timeout(900)

MIGRATE = '''"""The release phase: create the schema (idempotent) and record the migration."""
import os
import urllib.parse

import pg8000.dbapi

url = urllib.parse.urlparse(os.environ["DATABASE_URL"])
conn = pg8000.dbapi.connect(user=url.username, password=url.password, host=url.hostname,
                            port=url.port, database=url.path.lstrip("/"))
cur = conn.cursor()
cur.execute("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY)")
cur.execute("INSERT INTO migrations VALUES ('0001_initial') ON CONFLICT DO NOTHING")
conn.commit()
print("Applied 0001_initial")
'''
APP = '''import os
import urllib.parse
from http.server import BaseHTTPRequestHandler, HTTPServer

import pg8000.dbapi


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        url = urllib.parse.urlparse(os.environ["DATABASE_URL"])
        conn = pg8000.dbapi.connect(user=url.username, password=url.password,
                                    host=url.hostname, port=url.port,
                                    database=url.path.lstrip("/"))
        cur = conn.cursor()
        cur.execute("SELECT name FROM migrations ORDER BY name")
        body = ("migrations: " + ",".join(r[0] for r in cur.fetchall())).encode()
        conn.close()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


HTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
'''


def pg8000_wheels(directory: Path) -> None:
    """pg8000 and what it needs, as wheels for the python base image (built offline)."""
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:",
                    "--python-version", "3.11", "-d", str(directory), "pg8000"],
                   check=True, timeout=300)


@pytest.fixture
def server(tmp_path_factory, redis_url, docker_client, postgres_admin_url, clients):
    with serving(tmp_path_factory.mktemp("pg"), redis_url, docker_client, "p",
                 {"GITPAAS_POSTGRES_ADMIN_URL": postgres_admin_url,
                  "GITPAAS_HEALTH_TIMEOUT": "60"}) as srv:
        try:
            yield srv
        finally:
            drop_instance(postgres_admin_url, srv.instance)


def drop_instance(admin_url: str, instance: str) -> None:
    """Drop what a failed test may have left: the instance's databases and roles."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        like = (f"{instance}\\_%",)
        for (name,) in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s",
                                    like).fetchall():
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        for (name,) in conn.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE %s",
                                    like).fetchall():
            conn.execute(f'DROP ROLE IF EXISTS "{name}"')


def test_an_app_migrates_against_its_own_postgres(server, tmp_path, postgres_admin_url,
                                                  base_images):
    repo_dir = tmp_path / "djangoish"
    pg8000_wheels(repo_dir / "wheels")
    assert server.ssh("apps:create", "djangoish").returncode == 0
    created = server.ssh("postgres:create", "djangoish", "--no-restart")
    assert created.returncode == 0, created.stderr
    repo = make_repo(repo_dir, {
        "requirements.txt": "pg8000\n", "migrate.py": MIGRATE, "app.py": APP,
        "Procfile": "web: python app.py\nrelease: python migrate.py\n"})
    pushed = server.push(repo, "djangoish")
    assert pushed.returncode == 0, pushed.stderr
    assert "Applied 0001_initial" in pushed.stderr
    assert server.get(server.host("djangoish")) == (200, "migrations: 0001_initial")
    info = server.ssh("postgres:info", "djangoish")
    assert "Tables:" in info.stdout and "****" in info.stdout, info.stderr

    # Another app's credentials are refused on this database.
    assert server.ssh("apps:create", "intruder").returncode == 0
    assert server.ssh("postgres:create", "intruder", "--no-restart").returncode == 0
    theirs = urlparse(server.ssh("config:get", "intruder", "DATABASE_URL").stdout.strip())
    mine = urlparse(server.ssh("config:get", "djangoish", "DATABASE_URL").stdout.strip())
    with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
        psycopg.connect(host="127.0.0.1", port=theirs.port, user=theirs.username,
                        password=theirs.password, dbname=mine.path.lstrip("/"),
                        connect_timeout=5)
    # An app has one DATABASE_URL: MySQL beside PostgreSQL is refused.
    both = server.ssh("mysql:create", "djangoish")
    assert both.returncode == 1 and "has a PostgreSQL database" in both.stderr

    exported = subprocess.run([*server.ssh_command(), "git@127.0.0.1", "postgres:export",
                               "djangoish"], capture_output=True, timeout=120)
    assert exported.returncode == 0 and exported.stdout.startswith(b"PGDMP")
    imported = subprocess.run([*server.ssh_command(), "git@127.0.0.1", "postgres:import",
                               "intruder"], input=exported.stdout, capture_output=True,
                              timeout=120)
    assert imported.returncode == 0, imported.stderr
    for app in ("djangoish", "intruder"):
        gone = server.ssh("apps:destroy", app, "--confirm", app)
        assert gone.returncode == 0, gone.stderr
    with psycopg.connect(postgres_admin_url) as conn:
        left = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s",
                            (f"{server.instance}_%",)).fetchall()
    assert left == []
