"""What the app datastores (``mysql.py``, ``postgres.py``, ``redis.py``) share: names and
passwords, credentials and their URLs, the admin server's settings, 0600 credential files
for client programs, and streaming a dump out of or into a client program.

Passwords are made here with ``secrets``, handed back once to be stored in the app's
(encrypted) config vars, never logged: ``repr`` of credentials masks them, client
programs read them from a file that only gitpaas's user can read and that is removed
afterwards, never from their command line or environment.
"""

from __future__ import annotations

import dataclasses
import io
import os
import secrets
import shutil
import string
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, ClassVar, Generic, NamedTuple, TypeVar
from urllib.parse import quote, unquote, urlparse

from .. import names
from ..errors import InvalidInput, ServiceError
from ..terminal import ByteReader

PASSWORD_LENGTH = 32
PASSWORD_ALPHABET = string.ascii_letters + string.digits
CHUNK = 64 * 1024
MESSAGE_TAIL = 2000  # bytes of a failed program's output kept for its error message
MAX_NAME = 64  # MySQL's limit for a database name (MariaDB's users: 80; PostgreSQL: 63)


def database_name(instance: str, app: str) -> str:
    """The database (and user or role) name of ``app`` in ``instance``:
    ``<instance>_<app>`` with ``-`` turned into ``_``. Instance names hold only
    ``a-z0-9`` and app names no ``_``, so the mapping is one-to-one, and at most
    20 + 1 + 30 = 51 characters."""
    names.instance_name(instance)
    names.app_name(app)
    name = f"{instance}_{app.replace('-', '_')}"
    assert len(name) <= MAX_NAME, name
    return name


def new_password(length: int = PASSWORD_LENGTH) -> str:
    """A random password of letters and digits (~190 bits for 32 characters)."""
    return "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(length))


# -- credentials --------------------------------------------------------------------------


class SecretRepr:
    """A dataclass mixin whose ``repr`` shows every field but ``password`` (``****``).
    Subclasses are declared with ``@dataclass(repr=False)`` so they keep it."""

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{f.name}='****'" if f.name == "password" else f"{f.name}={getattr(self, f.name)!r}"
            for f in dataclasses.fields(self))  # type: ignore[arg-type]
        return f"{type(self).__name__}({shown})"


def url_of(scheme: str, user: str, password: str, host: str, port: int, path: str,
           reveal: bool = True) -> str:
    """``scheme://user:password@host:port/path``, user and password percent-quoted, the
    password ``****`` unless ``reveal``."""
    secret = quote(password, safe="") if reveal else "****"
    return f"{scheme}://{quote(user, safe='')}:{secret}@{host}:{port}/{path}"


class ParsedURL(NamedTuple):
    """The parts of a datastore URL (user and password unquoted)."""

    host: str
    port: int
    path: str
    user: str
    password: str


def parse_url(url: str, schemes: tuple[str, ...], default_port: int) -> ParsedURL | None:
    """The parts of ``url`` when its scheme is one of ``schemes``, else None (also for a
    hand-set URL whose port is not a number: not ours to use)."""
    if not url.startswith(tuple(f"{s}://" for s in schemes)):
        return None
    p = urlparse(url)
    try:
        port = p.port or default_port
    except ValueError:
        return None
    return ParsedURL(p.hostname or "", port, p.path.lstrip("/"), unquote(p.username or ""),
                     unquote(p.password or ""))


@dataclass(frozen=True, repr=False)
class DatabaseCredentials(SecretRepr):
    """How an app reaches its database. ``repr`` never shows the password."""

    SCHEME: ClassVar[str] = ""

    host: str
    port: int
    database: str
    user: str
    password: str

    def url(self, reveal: bool = True) -> str:
        """``<scheme>://user:pass@host:port/db`` (password masked unless ``reveal``)."""
        return url_of(self.SCHEME, self.user, self.password, self.host, self.port,
                      self.database, reveal)

    def config_vars(self) -> dict[str, str]:
        """The config vars an app gets: DATABASE_URL."""
        return {"DATABASE_URL": self.url()}


# -- the admin server ---------------------------------------------------------------------


@dataclass(frozen=True)
class AdminServer:
    """Where a database server is, as seen by gitpaas (its admin URL) and by app
    containers (``app_host``, ``app_port``; 0: the admin URL's port)."""

    LABEL: ClassVar[str] = ""  # MySQL, PostgreSQL
    SETTING: ClassVar[str] = ""  # the setting holding the admin URL
    SCHEMES: ClassVar[tuple[str, ...]] = ()
    DEFAULT_PORT: ClassVar[int] = 0

    admin_url: str = field(repr=False)
    app_host: str = "172.17.0.1"
    app_port: int = 0

    def __post_init__(self) -> None:
        if not self.admin_url:
            raise InvalidInput(f"{self.LABEL} is not configured: set {self.SETTING}"
                               f" (GITPAAS_{self.SETTING.upper()}) in the settings")
        if urlparse(self.admin_url).scheme not in self.SCHEMES:
            raise InvalidInput(f"{self.SETTING} must be a {self.SCHEMES[-1]}:// URL")

    @property
    def admin(self) -> dict[str, Any]:
        """Connection arguments of the admin account: host, port, user, password."""
        p = urlparse(self.admin_url)
        return {"host": p.hostname or "127.0.0.1", "port": p.port or self.DEFAULT_PORT,
                "user": unquote(p.username or ""), "password": unquote(p.password or "")}

    @property
    def port_for_apps(self) -> int:
        """The port app containers connect to."""
        return self.app_port or int(self.admin["port"])


S = TypeVar("S", bound=AdminServer)
C = TypeVar("C", bound=DatabaseCredentials)


class DatabaseDatastores(Generic[S, C]):
    """App databases on one server: each app's database and its user (or role) share
    the name ``database_name(instance, app)``. Subclasses say how to ``recreate``."""

    CREDENTIALS: type[C]

    def __init__(self, server: S, instance: str) -> None:
        self.server = server
        self.instance = names.instance_name(instance)

    def names_for(self, app: str) -> tuple[str, str]:
        """(database, user) of ``app``."""
        name = database_name(self.instance, app)
        return name, name

    def create(self, app: str) -> C:
        """Create the app's database and user with a new password; refuse (``Conflict``)
        if either exists already."""
        database, user = self.names_for(app)
        password = new_password()
        self.recreate(database, user, password)
        return self.CREDENTIALS(self.server.app_host, self.server.port_for_apps, database,
                                user, password)

    def recreate(self, database: str, user: str, password: str) -> None:
        """Create ``database`` and ``user`` with ``password`` (a restore passes the one in
        the app's restored config vars); refuse if either exists."""
        raise NotImplementedError


@contextmanager
def admin_session(label: str, connect: Callable[[], Any], errors: type[BaseException] |
                  tuple[type[BaseException], ...],
                  reason: Callable[[BaseException], str]) -> Iterator[Any]:
    """A connection made by ``connect``, closed afterwards; the driver's ``errors`` become
    ``ServiceError`` (``<label> is unavailable``, ``<label> failed``) with ``reason``."""
    try:
        conn = connect()
    except errors as exc:
        raise ServiceError(f"{label} is unavailable: {reason(exc)}") from exc
    try:
        yield conn
    except errors as exc:
        raise ServiceError(f"{label} failed: {reason(exc)}") from exc
    finally:
        conn.close()


# -- client programs ----------------------------------------------------------------------


def find_program(candidates: tuple[str, ...], package: str,
                 fallback_glob: str = "") -> str:
    """The path of the first of ``candidates`` on PATH (else the newest match of
    ``fallback_glob``); ``ServiceError`` naming the Debian ``package`` when none is."""
    for name in candidates:
        path = shutil.which(name)
        if path:
            return path
    if fallback_glob:
        found = sorted(Path("/").glob(fallback_glob.lstrip("/")))
        if found:
            return str(found[-1])
    raise ServiceError(f"{candidates[0]} is not installed (Debian package {package})")


def one_line(value: object, what: str) -> str:
    """``value`` as text; ``InvalidInput`` if it holds a newline (it goes into a
    line-oriented credential file)."""
    text = str(value)
    if "\n" in text or "\r" in text:
        raise InvalidInput(f"a {what} may not hold a newline")
    return text


@contextmanager
def private_file(prefix: str, suffix: str, text: str) -> Iterator[str]:
    """A temporary file (mode 0600, from ``mkstemp``) holding ``text``; its path, and the
    file removed afterwards whatever happens."""
    fd, path = tempfile.mkstemp(prefix=prefix, suffix=suffix)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        yield path
    finally:
        Path(path).unlink(missing_ok=True)


def _tail(output: IO[bytes]) -> str:
    output.seek(0, os.SEEK_END)
    output.seek(max(0, output.tell() - MESSAGE_TAIL))
    return output.read().decode("utf-8", "replace").strip()


def stream_out(argv: list[str], write: Callable[[bytes], object],
               closed: Callable[[], bool] = lambda: False,
               env: dict[str, str] | None = None) -> int:
    """Run ``argv`` and pass its stdout on to ``write`` as it comes; return the bytes.
    ``closed()`` true (the client went away) kills it. ``ServiceError`` with the end of
    its stderr when it fails."""
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
        message = _tail(errors)
    if code != 0:
        raise ServiceError(f"{Path(argv[0]).name} failed ({code}): {message}")
    return total


def stream_in(argv: list[str], stdin: ByteReader, env: dict[str, str] | None = None,
              head: bytes = b"") -> int:
    """Run ``argv`` with ``head`` and then ``stdin`` as its input; return the bytes sent.
    ``InvalidInput`` (``the import failed``) with the last line of its output when it
    fails: the input is the user's."""
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
        message = _tail(output)
    if code != 0:
        last = message.splitlines()[-1] if message else ""
        raise InvalidInput(f"the import failed ({code}): {last}")
    return total


def first_bytes(stdin: ByteReader, size: int) -> bytes:
    """The first ``size`` bytes of an import; ``InvalidInput`` when there are none."""
    head = stdin.read(size)
    if not head:
        raise InvalidInput("nothing to import: send the dump on stdin")
    return head
