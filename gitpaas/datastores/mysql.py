"""MySQL (MariaDB) databases for apps, on the server at ``settings.mysql_admin_url``.

Every app gets one database and one user with privileges on that database only. Names
derive from the instance and the validated app name: ``<instance>_<app>`` with ``-``
turned into ``_``. Instance names hold only ``a-z0-9`` and app names no ``_``, so the
mapping is one-to-one, and at most 20 + 1 + 30 = 51 characters: within MySQL's 64
characters for a database and MariaDB's 80 for a user.

Identifiers are checked against ``[a-z0-9_]`` and quoted with backticks; every value
(user, host, password) is a bound parameter. Passwords are made here with ``secrets``,
handed back once to be stored in the app's (encrypted) config vars, and never logged;
the client programs (``mysqldump``, ``mysql``) read them from a 0600 defaults file that
is removed afterwards, never from their command line.

This module and ``store/`` are the only ones that import pymysql.
"""

from __future__ import annotations

import codecs
import io
import os
import re
import secrets
import shutil
import string
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlparse

import pymysql

from .. import names
from ..errors import Conflict, InvalidInput, ServiceError
from ..terminal import ByteReader

IDENTIFIER_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")
MAX_DATABASE = 64
MAX_USER = 80
PASSWORD_LENGTH = 32
PASSWORD_ALPHABET = string.ascii_letters + string.digits
CHUNK = 64 * 1024
# MariaDB's mysqldump (10.11.8+) starts every dump with this line; MySQL's client fails on
# it ("Unknown command '\\-'"), so mysql:export leaves it out.
SANDBOX_LINE = "/*M!999999\\- enable the sandbox mode */"
DUMP_OPTIONS = ("--single-transaction", "--hex-blob", "--no-tablespaces", "--skip-triggers",
                "--default-character-set=utf8mb4", "--skip-comments")


def database_name(instance: str, app: str) -> str:
    """The database (and user) name of ``app`` in ``instance``: ``<instance>_<app>``."""
    names.instance_name(instance)
    names.app_name(app)
    name = f"{instance}_{app.replace('-', '_')}"
    assert len(name) <= min(MAX_DATABASE, MAX_USER), name
    return name


def quote_identifier(name: str) -> str:
    """``name`` in backticks, after checking it is one of our derived identifiers."""
    if not IDENTIFIER_RE.fullmatch(name):
        raise InvalidInput(f"invalid MySQL identifier {name!r}")
    return f"`{name}`"


def new_password(length: int = PASSWORD_LENGTH) -> str:
    """A random password of letters and digits (~190 bits for 32 characters)."""
    return "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(length))


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
        """``mysql://user:pass@host:port/db`` (password masked unless ``reveal``)."""
        password = quote(self.password, safe="") if reveal else "****"
        return f"mysql://{quote(self.user, safe='')}:{password}@{self.host}:{self.port}/" \
               f"{self.database}"

    @property
    def db_host(self) -> str:
        """WordPress's DB_HOST: ``host`` or ``host:port`` when the port is not 3306."""
        return self.host if self.port == 3306 else f"{self.host}:{self.port}"

    def config_vars(self) -> dict[str, str]:
        """The config vars an app gets: DATABASE_URL and WordPress's DB_*."""
        return {"DATABASE_URL": self.url(), "DB_HOST": self.db_host,
                "DB_NAME": self.database, "DB_USER": self.user, "DB_PASSWORD": self.password}


CONFIG_KEYS = ("DATABASE_URL", "DB_HOST", "DB_NAME", "DB_USER", "DB_PASSWORD")


def credentials_from_config(config: dict[str, str]) -> Credentials | None:
    """The credentials in an app's config vars (DATABASE_URL, else DB_*), or None."""
    url = config.get("DATABASE_URL", "")
    if url.startswith("mysql://"):
        p = urlparse(url)
        try:
            port = p.port or 3306
        except ValueError:  # a hand-set URL with a bad port: not ours to use
            return None
        return Credentials(p.hostname or "", port, p.path.lstrip("/"),
                           unquote(p.username or ""), unquote(p.password or ""))
    if all(config.get(k) for k in ("DB_HOST", "DB_NAME", "DB_USER", "DB_PASSWORD")):
        host, _, port_text = config["DB_HOST"].partition(":")
        if port_text and not (port_text.isascii() and port_text.isdigit()):
            return None
        return Credentials(host, int(port_text or 3306), config["DB_NAME"], config["DB_USER"],
                           config["DB_PASSWORD"])
    return None


@dataclass(frozen=True)
class Server:
    """Where the MySQL server is, as seen by gitpaas (admin) and by app containers."""

    admin_url: str = field(repr=False)
    app_host: str = "172.17.0.1"
    app_port: int = 0
    user_host: str = "%"

    def __post_init__(self) -> None:
        if not self.admin_url:
            raise InvalidInput("MySQL is not configured: set mysql_admin_url"
                               " (GITPAAS_MYSQL_ADMIN_URL) in the settings")
        if urlparse(self.admin_url).scheme != "mysql":
            raise InvalidInput("mysql_admin_url must be a mysql:// URL")

    @property
    def admin(self) -> dict[str, Any]:
        """pymysql connection arguments of the admin account (no database)."""
        p = urlparse(self.admin_url)
        return {"host": p.hostname or "127.0.0.1", "port": p.port or 3306,
                "user": unquote(p.username or ""), "password": unquote(p.password or "")}

    @property
    def port_for_apps(self) -> int:
        return self.app_port or self.admin["port"]


class MySQLDatastores:
    """Creates, inspects, drops, dumps and loads app databases on one MySQL server."""

    def __init__(self, server: Server, instance: str) -> None:
        self.server = server
        self.instance = names.instance_name(instance)

    # -- admin connection ---------------------------------------------------------------

    @contextmanager
    def _admin(self) -> Iterator[Any]:
        try:
            conn = pymysql.connect(**self.server.admin, charset="utf8mb4", autocommit=True,
                                   connect_timeout=10)
        except pymysql.MySQLError as exc:
            raise ServiceError(f"MySQL is unavailable: {_reason(exc)}") from exc
        try:
            with conn.cursor() as cur:
                yield cur
        except pymysql.MySQLError as exc:
            raise ServiceError(f"MySQL failed: {_reason(exc)}") from exc
        finally:
            conn.close()

    # -- lifecycle ----------------------------------------------------------------------

    def names_for(self, app: str) -> tuple[str, str]:
        """(database, user) of ``app``."""
        name = database_name(self.instance, app)
        return name, name

    def database_exists(self, database: str) -> bool:
        with self._admin() as cur:
            cur.execute("SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s",
                        (database,))
            return cur.fetchone() is not None

    def user_exists(self, user: str) -> bool:
        with self._admin() as cur:
            cur.execute("SELECT 1 FROM mysql.user WHERE User = %s AND Host = %s",
                        (user, self.server.user_host))
            return cur.fetchone() is not None

    def create(self, app: str) -> Credentials:
        """Create the app's database and user; refuse if either exists already."""
        database, user = self.names_for(app)
        if self.database_exists(database) or self.user_exists(user):
            raise Conflict(f"MySQL database or user {database} exists already"
                           " (another install, or a leftover: drop it first)")
        password = new_password()
        qdb = quote_identifier(database)
        with self._admin() as cur:
            cur.execute(f"CREATE DATABASE {qdb} CHARACTER SET utf8mb4"
                        " COLLATE utf8mb4_unicode_ci")
            try:
                cur.execute("CREATE USER %s@%s IDENTIFIED BY %s",
                            (user, self.server.user_host, password))
                cur.execute(f"GRANT ALL PRIVILEGES ON {qdb}.* TO %s@%s",
                            (user, self.server.user_host))
            except BaseException:
                self._drop(cur, database, user)
                raise
        return Credentials(self.server.app_host, self.server.port_for_apps, database, user,
                           password)

    def recreate(self, database: str, user: str, password: str) -> None:
        """Create ``database`` and ``user`` with a known password (a restore: the password
        is the one in the app's restored config vars); refuse if either exists."""
        if self.database_exists(database) or self.user_exists(user):
            raise Conflict(f"MySQL database or user {database} exists already: drop it"
                           " first, or restore onto a fresh server")
        qdb = quote_identifier(database)
        quote_identifier(user)
        with self._admin() as cur:
            cur.execute(f"CREATE DATABASE {qdb} CHARACTER SET utf8mb4"
                        " COLLATE utf8mb4_unicode_ci")
            try:
                cur.execute("CREATE USER %s@%s IDENTIFIED BY %s",
                            (user, self.server.user_host, password))
                cur.execute(f"GRANT ALL PRIVILEGES ON {qdb}.* TO %s@%s",
                            (user, self.server.user_host))
            except BaseException:
                self._drop(cur, database, user)
                raise

    def destroy(self, database: str, user: str) -> None:
        """Drop the database and the user (each if it exists)."""
        with self._admin() as cur:
            self._drop(cur, database, user)

    def _drop(self, cur: Any, database: str, user: str) -> None:
        cur.execute(f"DROP DATABASE IF EXISTS {quote_identifier(database)}")
        quote_identifier(user)
        cur.execute("DROP USER IF EXISTS %s@%s", (user, self.server.user_host))

    def stats(self, database: str) -> dict[str, int]:
        """Tables and bytes (data + indexes) of ``database``."""
        with self._admin() as cur:
            cur.execute("SELECT COUNT(*), COALESCE(SUM(DATA_LENGTH + INDEX_LENGTH), 0)"
                        " FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s", (database,))
            tables, size = cur.fetchone()
        return {"tables": int(tables), "bytes": int(size)}

    # -- dump and load ------------------------------------------------------------------

    def export(self, database: str, write: Callable[[str], object],
               closed: Callable[[], bool] = lambda: False) -> int:
        """Stream ``mysqldump`` of ``database`` (as the admin) to ``write``; return bytes.

        The dump holds no CREATE DATABASE / USE lines, so it loads into any database, and
        not MariaDB's first line ``/*M!999999\\- enable the sandbox mode */`` (mysqldump
        of MariaDB 10.11.8 and later writes it, with no option to leave it out): MySQL 8's
        client reads ``\\-`` as a command it does not know and stops at line 1.
        """
        admin = self.server.admin
        out = SandboxLineFilter(write)
        with _defaults_file(admin["user"], admin["password"], admin["host"],
                            admin["port"]) as defaults:
            argv = [_program("mysqldump", "mariadb-dump"), f"--defaults-extra-file={defaults}",
                    *DUMP_OPTIONS, "--", database]
            total = _stream_out(argv, out, closed)
        out.flush()
        return total - out.dropped

    def import_(self, creds: Credentials, stdin: ByteReader) -> int:
        """Load SQL from ``stdin`` into the app's database as the app's own user.

        Running as the app's user means a dump can change nothing but that database;
        ``--sandbox`` makes the client refuse its own commands (``\\! cmd``, ``source
        FILE``), which would otherwise run on this host as gitpaas's user.
        """
        admin = self.server.admin
        with _defaults_file(creds.user, creds.password, admin["host"],
                            admin["port"]) as defaults:
            argv = [_program("mysql", "mariadb"), f"--defaults-extra-file={defaults}",
                    "--batch", "--sandbox", "--local-infile=0",
                    "--default-character-set=utf8mb4", "--", creds.database]
            return _stream_in(argv, stdin)


class SandboxLineFilter:
    """Passes text on, less a first line that is MariaDB's ``SANDBOX_LINE``.

    Holds back the start of the text until its first newline (or ``HEAD_LIMIT``
    characters) is seen; ``dropped`` is the number of bytes left out.
    """

    HEAD_LIMIT = 256

    def __init__(self, write: Callable[[str], object]) -> None:
        self.write = write
        self.head: str | None = ""
        self.dropped = 0

    def __call__(self, text: str) -> None:
        if self.head is None:
            self.write(text)
            return
        self.head += text
        if "\n" in self.head or len(self.head) >= self.HEAD_LIMIT:
            self.flush()

    def flush(self) -> None:
        """Write what is held back (at the end of the text)."""
        if self.head is None:
            return
        head, self.head = self.head, None
        first, newline, rest = head.partition("\n")
        if first.strip() == SANDBOX_LINE:  # it ends with a space
            self.dropped = len((first + newline).encode())
            head = rest
        if head:
            self.write(head)


def _reason(exc: BaseException) -> str:
    """A pymysql error's message (never holds a password)."""
    args: tuple[object, ...] = getattr(exc, "args", ())
    return str(args[1]) if len(args) > 1 else str(exc)


def _program(*candidates: str) -> str:
    for name in candidates:
        path = shutil.which(name)
        if path:
            return path
    raise ServiceError(f"{candidates[0]} is not installed (Debian package mariadb-client)")


def _option_value(value: str) -> str:
    """A value for a MySQL option file: double-quoted, backslashes escaped."""
    if "\n" in value or "\r" in value:
        raise InvalidInput("a MySQL option value may not hold a newline")
    return '"' + value.replace("\\", "\\\\") + '"'


@contextmanager
def _defaults_file(user: str, password: str, host: str, port: int) -> Iterator[str]:
    """A ``[client]`` option file (mode 0600) with the credentials, removed afterwards."""
    fd, path = tempfile.mkstemp(prefix="gitpaas-my-", suffix=".cnf")
    try:
        with os.fdopen(fd, "w") as f:
            f.write("[client]\n")
            f.write(f"user={_option_value(user)}\n")
            f.write(f"password={_option_value(password)}\n")
            f.write(f"host={_option_value(host)}\nport={int(port)}\nprotocol=tcp\n")
        yield path
    finally:
        Path(path).unlink(missing_ok=True)


def _stream_out(argv: list[str], write: Callable[[str], object],
                closed: Callable[[], bool]) -> int:
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    total = 0
    with tempfile.TemporaryFile() as errors, subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors) as proc:
        assert isinstance(proc.stdout, io.BufferedReader)  # a pipe with the default buffer
        while chunk := proc.stdout.read1(CHUNK):
            total += len(chunk)
            write(decoder.decode(chunk))
            if closed():
                proc.kill()
                break
        tail = decoder.decode(b"", final=True)
        if tail:
            write(tail)
        code = proc.wait()
        errors.seek(0)
        message = errors.read()[-2000:].decode("utf-8", "replace").strip()
    if code != 0:
        raise ServiceError(f"{Path(argv[0]).name} failed ({code}): {message}")
    return total


def _stream_in(argv: list[str], stdin: ByteReader) -> int:
    total = 0
    with tempfile.TemporaryFile() as output, subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=output, stderr=subprocess.STDOUT) as proc:
        assert proc.stdin is not None
        try:
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
        raise InvalidInput(f"the import failed ({code}): {message}")
    if not total:
        raise InvalidInput("nothing to import: send the dump on stdin")
    return total

