"""A connection per transaction to SQLite or MySQL, with one parameter style (``?``)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import pymysql

from ..errors import InvalidInput, ServiceError

DB_ERRORS = (sqlite3.Error, pymysql.MySQLError)


class Cursor:
    """Runs ``?``-style SQL on either driver."""

    def __init__(self, raw: Any, dialect: str) -> None:
        self._raw = raw
        self.dialect = dialect

    def execute(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> Cursor:
        if self.dialect == "mysql":
            sql = sql.replace("%", "%%").replace("?", "%s")
        self._raw.execute(sql, tuple(params))
        return self

    def one(self) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self._raw.fetchone()
        return row

    def value(self) -> Any:
        """The first column of the one row an aggregate (``COUNT``, ``MAX``) returns."""
        row = self._raw.fetchone()
        if row is None:
            raise ServiceError("the database returned no row for an aggregate")
        return row[0]

    def all(self) -> list[tuple[Any, ...]]:
        return list(self._raw.fetchall())

    @property
    def rowcount(self) -> int:
        return int(self._raw.rowcount)

    @property
    def lastrowid(self) -> int | None:
        rowid: int | None = self._raw.lastrowid
        return rowid


class Database:
    """Opens connections for a ``sqlite:///path`` or ``mysql://user:pw@host:port/db`` URL."""

    def __init__(self, url: str) -> None:
        self.url = url
        parsed = urlparse(url)
        self.dialect = {"sqlite": "sqlite", "mysql": "mysql"}.get(parsed.scheme, "")
        if not self.dialect:
            raise InvalidInput(f"unsupported database URL scheme {parsed.scheme!r}")
        self._parsed = parsed
        self._local = threading.local()
        if self.dialect == "sqlite":
            Path(parsed.path).parent.mkdir(parents=True, exist_ok=True)

    def _connect(self) -> Any:
        if self.dialect == "sqlite":
            conn = sqlite3.connect(self._parsed.path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA busy_timeout=30000")
            conn.execute("PRAGMA synchronous=NORMAL")
            return conn
        p = self._parsed
        query = parse_qs(p.query)
        return pymysql.connect(
            host=p.hostname or "127.0.0.1",
            port=p.port or 3306,
            user=unquote(p.username or ""),
            password=unquote(p.password or ""),
            database=p.path.lstrip("/") or None,
            unix_socket=query.get("unix_socket", [None])[0],
            charset="utf8mb4",
            autocommit=True,
            connect_timeout=10,
        )

    def _connection(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        elif self.dialect == "mysql":
            try:
                conn.ping(False)
            except pymysql.MySQLError:
                conn = self._local.conn = self._connect()
        return conn

    @contextmanager
    def transaction(self) -> Iterator[Cursor]:
        """A cursor inside one transaction: committed on success, rolled back on error."""
        try:
            conn = self._connection()
            raw = conn.cursor()
            raw.execute("BEGIN IMMEDIATE" if self.dialect == "sqlite" else "BEGIN")
        except DB_ERRORS as exc:
            self._local.conn = None
            raise ServiceError(f"state store unavailable: {exc}") from exc
        try:
            yield Cursor(raw, self.dialect)
            conn.commit() if self.dialect == "mysql" else raw.execute("COMMIT")
        except BaseException as exc:
            try:
                conn.rollback() if self.dialect == "mysql" else raw.execute("ROLLBACK")
            except DB_ERRORS:
                self._local.conn = None
            if isinstance(exc, DB_ERRORS):
                raise ServiceError(f"state store error: {exc}") from exc
            raise
        finally:
            raw.close()

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
