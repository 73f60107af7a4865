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

import os
import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import psycopg
from psycopg import sql

from ..errors import Conflict, InvalidInput, ServiceError
from ..terminal import ByteReader
from .common import (
    AdminServer,
    DatabaseCredentials,
    DatabaseDatastores,
    admin_session,
    find_program,
    first_bytes,
    one_line,
    parse_url,
    private_file,
    stream_in,
    stream_out,
)

CUSTOM_MAGIC = b"PGDMP"
MAX_PLAIN_IMPORT = 256 * 1024 * 1024
IDENTIFIER_RE = re.compile(r"[a-z][a-z0-9_]{0,62}")
PSQL_COMMAND_RE = re.compile(rb"(?m)^\s*\\")
COPY_STDIN_RE = re.compile(rb"(?im)\bFROM\s+stdin\b")


def identifier(name: str) -> sql.Identifier:
    """One of our derived names, checked, as a quoted SQL identifier."""
    if not IDENTIFIER_RE.fullmatch(name):
        raise InvalidInput(f"invalid PostgreSQL identifier {name!r}")
    return sql.Identifier(name)


@dataclass(frozen=True, repr=False)
class Credentials(DatabaseCredentials):
    """How an app reaches its database (DATABASE_URL, the one config var Heroku's
    Postgres sets). ``repr`` never shows the password."""

    SCHEME = "postgres"


CONFIG_KEYS = ("DATABASE_URL",)


def credentials_from_config(config: dict[str, str]) -> Credentials | None:
    """The credentials in an app's DATABASE_URL (postgres:// or postgresql://), or None."""
    parsed = parse_url(config.get("DATABASE_URL", ""), ("postgres", "postgresql"), 5432)
    if parsed is None:
        return None
    return Credentials(parsed.host, parsed.port, parsed.path, parsed.user, parsed.password)


@dataclass(frozen=True)
class Server(AdminServer):
    """Where the PostgreSQL server is, as seen by gitpaas (admin) and by app containers."""

    LABEL = "PostgreSQL"
    SETTING = "postgres_admin_url"
    SCHEMES = ("postgres", "postgresql")
    DEFAULT_PORT = 5432

    @property
    def admin(self) -> dict[str, Any]:
        """Connection arguments of the admin account, with its database (``dbname``)."""
        return {**super().admin,
                "dbname": urlparse(self.admin_url).path.lstrip("/") or "postgres"}


class PostgresDatastores(DatabaseDatastores[Server, Credentials]):
    """Creates, inspects, drops, dumps and loads app databases on one PostgreSQL server."""

    CREDENTIALS = Credentials

    def _connect(self, **overrides: Any) -> AbstractContextManager[psycopg.Connection]:
        """A connection as the admin (``overrides``: another database or login)."""
        params = {**self.server.admin, **overrides}
        return admin_session(
            "PostgreSQL", lambda: psycopg.connect(**params, autocommit=True,
                                                  connect_timeout=10),
            psycopg.Error, _reason)

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
        with _passfile(admin, database) as passfile:
            env = client_env(passfile)
            argv = [program("pg_dump"), "--format=custom", "--no-owner", "--no-privileges",
                    f"--host={admin['host']}", f"--port={admin['port']}",
                    f"--username={admin['user']}", "--no-password", f"--dbname={database}"]
            return stream_out(argv, write, closed, env)

    def import_(self, creds: Credentials, stdin: ByteReader) -> int:
        """Load a dump from ``stdin`` into the app's database, as the app's own role."""
        head = first_bytes(stdin, len(CUSTOM_MAGIC))
        admin = self.server.admin
        login = {"host": admin["host"], "port": admin["port"], "user": creds.user,
                 "password": creds.password, "dbname": creds.database}
        if head == CUSTOM_MAGIC:
            with _passfile(login, creds.database) as passfile:
                env = client_env(passfile)
                argv = [program("pg_restore"), "--no-owner", "--no-privileges",
                        "--single-transaction", "--exit-on-error", f"--host={login['host']}",
                        f"--port={login['port']}", f"--username={creds.user}",
                        "--no-password", f"--dbname={creds.database}"]
                return stream_in(argv, stdin, env, head)
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


def program(name: str) -> str:
    """The path of PostgreSQL's client program ``name`` (PATH, else the newest in
    ``/usr/lib/postgresql/*/bin``)."""
    return find_program((name,), "postgresql-client", f"/usr/lib/postgresql/*/bin/{name}")


def _passfile_value(value: object) -> str:
    return one_line(value, "PostgreSQL credential").replace("\\", "\\\\").replace(":", "\\:")


def _passfile(login: dict[str, Any], database: str) -> AbstractContextManager[str]:
    """A 0600 password file (``PGPASSFILE``) for ``login``, removed afterwards."""
    return private_file("gitpaas-pg-", ".pass", ":".join(_passfile_value(v) for v in (
        login["host"], login["port"], database, login["user"], login["password"])) + "\n")


def client_env(passfile: str) -> dict[str, str]:
    """The environment of a PostgreSQL client program reading ``passfile``."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PGPASSFILE": passfile,
            "PGCONNECT_TIMEOUT": "10", "LC_ALL": "C.UTF-8"}
