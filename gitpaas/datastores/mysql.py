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
import re
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

import pymysql

from ..errors import Conflict, InvalidInput
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
from .common import database_name as database_name
from .common import new_password as new_password

IDENTIFIER_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")
MAX_DATABASE = 64
MAX_USER = 80
# MariaDB's mysqldump (10.11.8+) starts every dump with this line; MySQL's client fails on
# it ("Unknown command '\\-'"), so mysql:export leaves it out.
SANDBOX_LINE = "/*M!999999\\- enable the sandbox mode */"
DUMP_OPTIONS = ("--single-transaction", "--hex-blob", "--no-tablespaces", "--skip-triggers",
                "--default-character-set=utf8mb4", "--skip-comments")
CLIENT_OPTIONS = ("--batch", "--sandbox", "--local-infile=0",
                  "--default-character-set=utf8mb4")


def quote_identifier(name: str) -> str:
    """``name`` in backticks, after checking it is one of our derived identifiers."""
    if not IDENTIFIER_RE.fullmatch(name):
        raise InvalidInput(f"invalid MySQL identifier {name!r}")
    return f"`{name}`"


@dataclass(frozen=True, repr=False)
class Credentials(DatabaseCredentials):
    """How an app reaches its database. ``repr`` never shows the password."""

    SCHEME = "mysql"

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
        parsed = parse_url(url, ("mysql",), 3306)
        return Credentials(parsed.host, parsed.port, parsed.path, parsed.user,
                           parsed.password) if parsed else None
    if all(config.get(k) for k in ("DB_HOST", "DB_NAME", "DB_USER", "DB_PASSWORD")):
        host, _, port_text = config["DB_HOST"].partition(":")
        if port_text and not (port_text.isascii() and port_text.isdigit()):
            return None
        return Credentials(host, int(port_text or 3306), config["DB_NAME"], config["DB_USER"],
                           config["DB_PASSWORD"])
    return None


@dataclass(frozen=True)
class Server(AdminServer):
    """Where the MySQL server is, as seen by gitpaas (admin) and by app containers;
    ``user_host`` is the host part of app users ('%': any address)."""

    LABEL = "MySQL"
    SETTING = "mysql_admin_url"
    SCHEMES = ("mysql",)
    DEFAULT_PORT = 3306

    user_host: str = "%"


class MySQLDatastores(DatabaseDatastores[Server, Credentials]):
    """Creates, inspects, drops, dumps and loads app databases on one MySQL server."""

    CREDENTIALS = Credentials

    # -- admin connection ---------------------------------------------------------------

    def _admin(self) -> AbstractContextManager[Any]:
        """A cursor of the admin connection (``ServiceError`` when MySQL fails)."""
        return _cursor(admin_session(
            "MySQL", lambda: pymysql.connect(**self.server.admin, charset="utf8mb4",
                                             autocommit=True, connect_timeout=10),
            pymysql.MySQLError, _reason))

    # -- lifecycle ----------------------------------------------------------------------

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

    def recreate(self, database: str, user: str, password: str) -> None:
        """Create ``database`` and ``user`` (with ``password``); refuse if either exists.
        ``create`` makes a new password; a restore passes the one in the app's restored
        config vars."""
        if self.database_exists(database) or self.user_exists(user):
            raise Conflict(f"MySQL database or user {database} exists already"
                           " (another install, or a leftover: drop it first)")
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
        return dump(self.server.admin, database, write, closed)

    def import_(self, creds: Credentials, stdin: ByteReader) -> int:
        """Load SQL from ``stdin`` into the app's database as the app's own user.

        Running as the app's user means a dump can change nothing but that database;
        ``--sandbox`` makes the client refuse its own commands (``\\! cmd``, ``source
        FILE``), which would otherwise run on this host as gitpaas's user.
        """
        admin = self.server.admin
        return load({**admin, "user": creds.user, "password": creds.password},
                    creds.database, stdin)


def dump(login: dict[str, Any], database: str, write: Callable[[str], object],
         closed: Callable[[], bool] = lambda: False) -> int:
    """Stream ``mysqldump`` of ``database`` (``login``: host, port, user, password) to
    ``write`` as text, without MariaDB's sandbox line; return the bytes written."""
    out = SandboxLineFilter(write)
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    with defaults_file(login["user"], login["password"], login["host"],
                       login["port"]) as defaults:
        argv = [program("mysqldump", "mariadb-dump"), f"--defaults-extra-file={defaults}",
                *DUMP_OPTIONS, "--", database]
        total = stream_out(argv, lambda chunk: out(decoder.decode(chunk)), closed)
    out(decoder.decode(b"", final=True))
    out.flush()
    return total - out.dropped


def load(login: dict[str, Any], database: str, stdin: ByteReader) -> int:
    """Run the SQL of ``stdin`` in ``database`` with ``mysql --sandbox`` as ``login``'s
    user; return the bytes read. ``InvalidInput`` when it fails or there is nothing."""
    head = first_bytes(stdin, 1)
    with defaults_file(login["user"], login["password"], login["host"],
                       login["port"]) as defaults:
        argv = [program("mysql", "mariadb"), f"--defaults-extra-file={defaults}",
                *CLIENT_OPTIONS, "--", database]
        return stream_in(argv, stdin, head=head)


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


@contextmanager
def _cursor(session: AbstractContextManager[Any]) -> Iterator[Any]:
    with session as conn, conn.cursor() as cur:
        yield cur


def program(*candidates: str) -> str:
    """The path of MySQL's client program ``candidates[0]`` (or its MariaDB name)."""
    return find_program(candidates, "mariadb-client")


def _option_value(value: str) -> str:
    """A value for a MySQL option file: double-quoted, backslashes escaped."""
    return '"' + one_line(value, "MySQL option value").replace("\\", "\\\\") + '"'


def defaults_file(user: str, password: str, host: str,
                  port: int) -> AbstractContextManager[str]:
    """A ``[client]`` option file (mode 0600) with the credentials, removed afterwards:
    ``--defaults-extra-file=`` of ``mysql`` and ``mysqldump``."""
    return private_file("gitpaas-my-", ".cnf", (
        f"[client]\nuser={_option_value(user)}\npassword={_option_value(password)}\n"
        f"host={_option_value(host)}\nport={int(port)}\nprotocol=tcp\n"))
