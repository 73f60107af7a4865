"""Issue 13: one datastore command module for mysql, postgres and redis (``Kind``)."""

from __future__ import annotations

from gitpaas.commands import load_all
from gitpaas.commands.registry import COMMANDS
from gitpaas.errors import ServiceError
from tests.unit.test_audit_trail import make_key, platform, run  # noqa: F401 - a fixture


def without_mysql(platform):  # noqa: F811
    """``platform`` as if mysql_admin_url were unset: asking for MySQL fails."""
    platform.__dict__.pop("mysql", None)

    class NoMySQL(type(platform)):
        @property
        def mysql(self):
            raise ServiceError("MySQL is not configured")

    platform.__class__ = NoMySQL


def test_every_kind_has_the_same_verbs_and_its_own_words():
    load_all()
    for kind in ("mysql", "postgres"):
        assert {n for n in COMMANDS if n.startswith(f"{kind}:")} == {
            f"{kind}:{v}" for v in ("create", "info", "destroy", "export", "import")}
    assert {n for n in COMMANDS if n.startswith("redis:")} == {
        "redis:create", "redis:info", "redis:destroy"}
    assert COMMANDS["postgres:export"].usage == (
        "postgres:export [APP]   (a pg_dump archive on stdout)")


def test_one_database_url_refused_before_the_other_server_is_asked(platform):  # noqa: F811
    store = platform.store
    admin = make_key(store, "admin")
    store.create_app("shop", "admin", "main")
    assert run(platform, admin, ["postgres:create", "shop"])[0] == 0
    without_mysql(platform)
    code, out, err = run(platform, admin, ["mysql:create", "shop"])
    assert code == 1 and err == (" !     shop has a PostgreSQL database: an app has one"
                                 " DATABASE_URL (postgres:destroy first)\n")
    code, _, err = run(platform, admin, ["mysql:destroy", "shop", "--confirm", "shop"])
    assert code == 1 and "shop has no MySQL database: create one with mysql:create" in err
    code, out, _ = run(platform, admin, ["postgres:info", "shop", "--json"])
    assert code == 0 and '"role": "u_shop"' in out and "pw" not in out
    code, out, err = run(platform, admin, ["redis:destroy", "shop", "--confirm", "shop"])
    assert code == 1 and err == " !     shop has no Redis\n"
