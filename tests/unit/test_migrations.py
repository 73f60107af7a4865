"""Versioned schema migrations on SQLite: steps run in order, once; newer schemas refused."""

from __future__ import annotations

import pytest

from gitpaas.errors import ServiceError
from gitpaas.store import schema
from gitpaas.store.store import open_store


def test_fresh_store_is_at_the_newest_version(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 's.db'}", tmp_path / "secret.key")
    assert store.schema_version() == schema.VERSION


def test_a_new_step_runs_once_on_an_older_store(tmp_path, monkeypatch):
    url, key = f"sqlite:///{tmp_path / 's.db'}", tmp_path / "secret.key"
    open_store(url, key).close()
    step = (schema.VERSION + 1, ["CREATE TABLE gp_probe (x INTEGER)",
                                 "INSERT INTO gp_probe (x) VALUES (1)"])
    monkeypatch.setattr(schema, "MIGRATIONS", [*schema.MIGRATIONS, step])
    monkeypatch.setattr(schema, "VERSION", step[0])
    store = open_store(url, key)
    store.migrate()  # a second run applies nothing again
    assert store.schema_version() == step[0]
    with store.db.transaction() as cur:
        assert cur.execute("SELECT COUNT(*) FROM gp_probe").one()[0] == 1


def test_a_failing_step_leaves_the_version_where_it_was(tmp_path, monkeypatch):
    url, key = f"sqlite:///{tmp_path / 's.db'}", tmp_path / "secret.key"
    open_store(url, key).close()
    before = schema.VERSION
    step = (before + 1, ["CREATE TABLE gp_probe (x INTEGER)", "NOT SQL AT ALL"])
    monkeypatch.setattr(schema, "MIGRATIONS", [*schema.MIGRATIONS, step])
    monkeypatch.setattr(schema, "VERSION", step[0])
    with pytest.raises(ServiceError):
        open_store(url, key)
    monkeypatch.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:-1])
    monkeypatch.setattr(schema, "VERSION", before)
    store = open_store(url, key)
    assert store.schema_version() == before
    with store.db.transaction() as cur:
        assert cur.execute("SELECT name FROM sqlite_master WHERE name = 'gp_probe'").one() is None


def test_a_newer_schema_is_refused_with_a_clear_message(tmp_path):
    url, key = f"sqlite:///{tmp_path / 's.db'}", tmp_path / "secret.key"
    store = open_store(url, key)
    with store.db.transaction() as cur:
        cur.execute("UPDATE gp_meta SET value = ? WHERE name = 'schema'",
                    (str(schema.VERSION + 1),))
    with pytest.raises(ServiceError, match="newer than this gitpaas knows"):
        open_store(url, key)
