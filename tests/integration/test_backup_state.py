"""The state part of a backup, on both stores: SQLite's online backup API while a writer
is busy, and a MySQL dump loaded back into an emptied database (real MariaDB)."""

from __future__ import annotations

import sqlite3
import threading

from gitpaas.backups import dump_state
from gitpaas.backups.restore import _load_state_dump
from gitpaas.store.store import open_store


def test_sqlite_state_is_copied_whole_while_written(tmp_path):
    url = f"sqlite:///{tmp_path / 'state.db'}"
    store = open_store(url, tmp_path / "secret.key")
    store.create_app("shop", "admin", "main")
    stop = threading.Event()

    def writer():
        n = 0
        while not stop.is_set() and n < 2000:
            store.set_config("shop", {f"K{n % 50}": str(n)})
            n += 1

    thread = threading.Thread(target=writer)
    thread.start()
    staging = tmp_path / "staging"
    staging.mkdir()
    try:
        dump_state(url, staging)
    finally:
        stop.set()
        thread.join()
    copy = sqlite3.connect(staging / "state.db")
    assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert copy.execute("SELECT name FROM gp_apps").fetchall() == [("shop",)]
    assert (staging / "state.db").stat().st_mode & 0o777 == 0o600


def test_mysql_state_dump_loads_into_an_emptied_database(tmp_path, mysql_database):
    store = open_store(mysql_database, tmp_path / "secret.key")
    store.create_app("shop", "admin", "main")
    store.set_config("shop", {"GREETING": "hello"})
    staging = tmp_path / "staging"
    staging.mkdir()
    dump_state(mysql_database, staging)
    dump = staging / "state.sql"
    assert dump.stat().st_mode & 0o777 == 0o600 and b"gp_apps" in dump.read_bytes()
    with store.db.transaction() as cur:
        tables = [r[0] for r in cur.execute("SHOW TABLES").all()]
        for table in tables:
            cur.execute(f"DROP TABLE {table}")
    store.close()
    _load_state_dump(mysql_database, dump)
    again = open_store(mysql_database, tmp_path / "secret.key")
    assert [a.name for a in again.list_apps()] == ["shop"]
    assert again.get_config("shop") == {"GREETING": "hello"}
    again.close()
