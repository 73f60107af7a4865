"""PostgreSQL databases for apps, on the server at ``settings.postgres_admin_url``.

Every app gets one database and one role that owns it, both named ``<instance>_<app>``
(``-`` -> ``_``, as for MySQL). ``CONNECT`` and ``TEMPORARY`` on the database are revoked
from ``PUBLIC``: no other app's role can even connect to it. The admin role (``CREATEDB
CREATEROLE``, not a superuser) is made a member of each app role so it can dump and drop
the app's database.

Exports are ``pg_dump`` custom-format archives (as the admin). Imports run as the app's
own role, never through ``psql``: a custom-format archive goes to ``pg_restore``, which
has no client commands; plain SQL is sent statement by statement through the driver, and
``psql``'s backslash commands (``\\! cmd`` runs a shell on the client host) are refused.
Passwords are bound parameters or come from a 0600 passfile removed afterwards; never
on a command line, never logged.

This module is the only one that imports psycopg.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlparse

import psycopg
from psycopg import sql

from ..errors import Conflict, InvalidInput, ServiceError
from ..terminal import ByteReader
from .mysql import database_name, new_password

CUSTOM_MAGIC = b"PGDMP"
CHUNK = 64 * 1024
MAX_PLAIN_IMPORT = 256 * 1024 * 1024
IDENTIFIER_RE = re.compile(r"[a-z][a-z0-9_]{0,62}")
PSQL_COMMAND_RE = re.compile(rb"(?m)^\s*\\")
COPY_STDIN_RE = re.compile(rb"(?im)\bFROM\s+stdin\b")


def identifier(name: str) -> sql.Identifier:
    """One of our derived names, checked, as a quoted SQL identifier."""
    if not IDENTIFIER_RE.fullmatch(name):
        raise InvalidInput(f"invalid PostgreSQL identifier {name!r}")
    return sql.Identifier(name)


@dataclass(frozen=True)
class Credentials:
    """How an app reaches its database. ``repr`` never shows the password."""

    host: str
    port: int
    database: str
    user: str
    password: str

    def __repr__(self) -> str:
        return (f"Credentials(host={self.host!r}, port={self.port}, "
                f"database={self.database!r}, user={self.user!r}, password='****')")

    def url(self, reveal: bool = True) -> str:
        """``postgres://user:pass@host:port/db`` (password masked unless ``reveal``)."""
        password = quote(self.password, safe="") if reveal else "****"
        return (f"postgres://{quote(self.user, safe='')}:{password}@{self.host}:{self.port}/"
                f"{self.database}")

    def config_vars(self) -> dict[str, str]:
        """DATABASE_URL, the one config var Heroku's Postgres sets."""
        return {"DATABASE_URL": self.url()}


CONFIG_KEYS = ("DATABASE_URL",)


def credentials_from_config(config: dict[str, str]) -> Credentials | None:
    """The credentials in an app's DATABASE_URL (postgres:// or postgresql://), or None."""
    url = config.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        return None
    p = urlparse(url)
    try:
        port = p.port or 5432
    except ValueError:
        return None
    return Credentials(p.hostname or "", port, p.path.lstrip("/"), unquote(p.username or ""),
                       unquote(p.password or ""))


@dataclass(frozen=True)
class Server:
    """Where the PostgreSQL server is, as seen by gitpaas (admin) and by app containers."""

    admin_url: str = field(repr=False)
    app_host: str = "172.17.0.1"
    app_port: int = 0

    def __post_init__(self) -> None:
        if not self.admin_url:
            raise InvalidInput("PostgreSQL is not configured: set postgres_admin_url"
                               " (GITPAAS_POSTGRES_ADMIN_URL) in the settings")
        if urlparse(self.admin_url).scheme not in {"postgres", "postgresql"}:
            raise InvalidInput("postgres_admin_url must be a postgresql:// URL")

    @property
    def admin(self) -> dict[str, Any]:
        p = urlparse(self.admin_url)
        return {"host": p.hostname or "127.0.0.1", "port": p.port or 5432,
                "user": unquote(p.username or ""), "password": unquote(p.password or ""),
                "dbname": p.path.lstrip("/") or "postgres"}

    @property
    def port_for_apps(self) -> int:
        return self.app_port or self.admin["port"]


class PostgresDatastores:
    """Creates, inspects, drops, dumps and loads app databases on one PostgreSQL server."""

    def __init__(self, server: Server, instance: str) -> None:
        self.server = server
        self.instance = instance

    @contextmanager
    def _connect(self, **overrides: Any) -> Iterator[psycopg.Connection]:
        params = {**self.server.admin, **overrides}
        try:
            conn = psycopg.connect(**params, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise ServiceError(f"PostgreSQL is unavailable: {_reason(exc)}") from exc
        try:
            yield conn
        except psycopg.Error as exc:
            raise ServiceError(f"PostgreSQL failed: {_reason(exc)}") from exc
        finally:
            conn.close()

    def names_for(self, app: str) -> tuple[str, str]:
        """(database, role) of ``app``."""
        name = database_name(self.instance, app)
        return name, name

    def create(self, app: str) -> Credentials:
        """Create the app's role and database; refuse if either exists already."""
        database, role = self.names_for(app)
        password = new_password()
        self.recreate(database, role, password)
        return Credentials(self.server.app_host, self.server.port_for_apps, database, role,
                           password)

    def recreate(self, database: str, role: str, password: str) -> None:
        """Create ``role`` (with ``password``) and its ``database``; refuse if either
        exists. ``create`` makes a new password; a restore passes the one in the app's
        restored config vars."""
        admin = self.server.admin["user"]
        with self._connect() as conn:
            taken = conn.execute(
                "SELECT (SELECT count(*) FROM pg_database WHERE datname = %s)"
                " + (SELECT count(*) FROM pg_roles WHERE rolname = %s)",
                (database, role)).fetchone()
            if taken and taken[0]:
                raise Conflict(f"PostgreSQL database or role {database} exists already"
                               " (another install, or a leftover: drop it first)")
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                identifier(role), sql.Literal(password)))
            try:
                conn.execute(sql.SQL("GRANT {} TO {}").format(identifier(role),
                                                               sql.Identifier(admin)))
                conn.execute(sql.SQL("CREATE DATABASE {} OWNER {} ENCODING 'UTF8'"
                                     " TEMPLATE template0").format(identifier(database),
                                                                   identifier(role)))
                conn.execute(sql.SQL("REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC")
                             .format(identifier(database)))
            except BaseException:
                self._drop(conn, database, role)
                raise

    def destroy(self, database: str, role: str) -> None:
        """Drop the database (closing its connections) and the role, each if it exists."""
        with self._connect() as conn:
            self._drop(conn, database, role)

    @staticmethod
    def _drop(conn: psycopg.Connection, database: str, role: str) -> None:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            identifier(database)))
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(identifier(role)))

    def stats(self, database: str) -> dict[str, int]:
        """Tables (in the public schema) and bytes of ``database``."""
        with self._connect(dbname=database) as conn:
            row = conn.execute(
                "SELECT (SELECT count(*) FROM pg_tables WHERE schemaname = 'public'),"
                " pg_database_size(current_database())").fetchone()
        return {"tables": int(row[0]), "bytes": int(row[1])} if row else {}

    # -- dump and load ------------------------------------------------------------------

    def export(self, database: str, write: Callable[[bytes], object],
               closed: Callable[[], bool] = lambda: False) -> int:
        """Stream a ``pg_dump`` custom-format archive of ``database``; return its bytes."""
        admin = self.server.admin
        with _passfile(admin, database) as env:
            argv = [_program("pg_dump"), "--format=custom", "--no-owner", "--no-privileges",
                    f"--host={admin['host']}", f"--port={admin['port']}",
                    f"--username={admin['user']}", "--no-password", f"--dbname={database}"]
            return _stream_out(argv, env, write, closed)

    def import_(self, creds: Credentials, stdin: ByteReader) -> int:
        """Load a dump from ``stdin`` into the app's database, as the app's own role."""
        head = stdin.read(len(CUSTOM_MAGIC))
        if not head:
            raise InvalidInput("nothing to import: send the dump on stdin")
        admin = self.server.admin
        login = {"host": admin["host"], "port": admin["port"], "user": creds.user,
                 "password": creds.password, "dbname": creds.database}
        if head == CUSTOM_MAGIC:
            with _passfile(login, creds.database) as env:
                argv = [_program("pg_restore"), "--no-owner", "--no-privileges",
                        "--single-transaction", "--exit-on-error", f"--host={login['host']}",
                        f"--port={login['port']}", f"--username={creds.user}",
                        "--no-password", f"--dbname={creds.database}"]
                return _stream_in(argv, env, head, stdin)
        return self._import_plain(login, head + stdin.read(MAX_PLAIN_IMPORT + 1))

    def _import_plain(self, login: dict[str, Any], script: bytes) -> int:
        if len(script) > MAX_PLAIN_IMPORT:
            raise InvalidInput("a plain SQL import is limited to 256 MB: send a custom-format"
                               " archive (pg_dump -Fc) instead")
        if PSQL_COMMAND_RE.search(script) or COPY_STDIN_RE.search(script):
            raise InvalidInput("the dump holds psql commands (lines starting with a"
                               " backslash, COPY FROM stdin): send a custom-format archive"
                               " (pg_dump -Fc, or postgres:export) or plain SQL with --inserts")
        try:
            text = script.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidInput("the dump is not UTF-8 text nor a pg_dump archive") from exc
        try:
            with psycopg.connect(**login, connect_timeout=10) as conn:
                conn.execute(text.encode())  # one transaction: all or nothing
        except psycopg.OperationalError as exc:
            raise ServiceError(f"PostgreSQL is unavailable: {_reason(exc)}") from exc
        except psycopg.Error as exc:
            raise InvalidInput(f"the import failed: {_reason(exc)}") from exc
        return len(script)


def _reason(exc: BaseException) -> str:
    """The server's message, first line only (never holds a password)."""
    diag = getattr(exc, "diag", None)
    text = (diag.message_primary if diag is not None and diag.message_primary else "") \
        or str(exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


def _program(name: str) -> str:
    path = shutil.which(name)
    if path:
        return path
    versions = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    if versions:
        return str(versions[-1])
    raise ServiceError(f"{name} is not installed (Debian package postgresql-client)")


def _passfile_value(value: object) -> str:
    text = str(value)
    if "\n" in text or "\r" in text:
        raise InvalidInput("a PostgreSQL credential may not hold a newline")
    return text.replace("\\", "\\\\").replace(":", "\\:")


@contextmanager
def _passfile(login: dict[str, Any], database: str) -> Iterator[dict[str, str]]:
    """The environment for a client program: a 0600 PGPASSFILE, removed afterwards."""
    fd, path = tempfile.mkstemp(prefix="gitpaas-pg-", suffix=".pass")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(":".join(_passfile_value(v) for v in (
                login["host"], login["port"], database, login["user"], login["password"])))
            f.write("\n")
        yield {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PGPASSFILE": path,
               "PGCONNECT_TIMEOUT": "10", "LC_ALL": "C.UTF-8"}
    finally:
        Path(path).unlink(missing_ok=True)


def _stream_out(argv: list[str], env: dict[str, str], write: Callable[[bytes], object],
                closed: Callable[[], bool]) -> int:
    total = 0
    with tempfile.TemporaryFile() as errors, subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors,
            env=env) as proc:
        assert isinstance(proc.stdout, io.BufferedReader)  # a pipe with the default buffer
        while chunk := proc.stdout.read1(CHUNK):
            total += len(chunk)
            write(chunk)
            if closed():
                proc.kill()
                break
        code = proc.wait()
        errors.seek(0)
        message = errors.read()[-2000:].decode("utf-8", "replace").strip()
    if code != 0:
        raise ServiceError(f"{Path(argv[0]).name} failed ({code}): {message}")
    return total


def _stream_in(argv: list[str], env: dict[str, str], head: bytes, stdin: ByteReader) -> int:
    total = len(head)
    with tempfile.TemporaryFile() as output, subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=output, stderr=subprocess.STDOUT,
            env=env) as proc:
        assert proc.stdin is not None
        try:
            proc.stdin.write(head)
            while chunk := stdin.read(CHUNK):
                total += len(chunk)
                proc.stdin.write(chunk)
            proc.stdin.close()
        except BrokenPipeError:
            pass
        code = proc.wait()
        output.seek(0)
        message = output.read()[-2000:].decode("utf-8", "replace").strip()
    if code != 0:
        last = message.splitlines()[-1] if message else ""
        raise InvalidInput(f"the import failed ({code}): {last}")
    return total
