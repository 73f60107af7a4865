"""The same store tests against SQLite and MySQL (real MariaDB)."""

from __future__ import annotations

import threading

import pytest

from gitpaas.errors import Conflict, InvalidInput, NotFound
from gitpaas.store import open_store


@pytest.fixture(params=["sqlite", "mysql"])
def store(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'state.db'}"
    else:
        url = request.getfixturevalue("mysql_database")
    s = open_store(url, tmp_path / "secret.key")
    yield s
    s.close()


def test_keys_first_is_admin_and_duplicates_refused(store):
    a = store.add_key("alice", "SHA256:a", "ssh-ed25519 AAAA")
    b = store.add_key("bob", "SHA256:b", "ssh-ed25519 BBBB")
    assert a.is_admin and not b.is_admin
    with pytest.raises(Conflict):
        store.add_key("alice", "SHA256:c", "x")
    with pytest.raises(Conflict):
        store.add_key("carol", "SHA256:a", "x")
    assert store.key_by_fingerprint("SHA256:b").name == "bob"
    assert [k.name for k in store.list_keys()] == ["alice", "bob"]
    store.create_app("bobs", "bob", "main")
    assert store.remove_key("bob", "alice") == ["bobs"]
    assert store.key_by_fingerprint("SHA256:b") is None
    assert store.get_app("bobs").owner == "alice"
    with pytest.raises(NotFound):
        store.remove_key("bob", "alice")
    with pytest.raises(InvalidInput, match="reserved"):
        store.add_key("local", "SHA256:l", "x")
    with pytest.raises(InvalidInput):
        store.add_key("bad name", "SHA256:z", "x")


def test_apps_access_and_shares(store):
    alice = store.add_key("alice", "SHA256:a", "k")
    bob = store.add_key("bob", "SHA256:b", "k")
    carol = store.add_key("carol", "SHA256:c", "k")
    app = store.create_app("shop", "bob", "main")
    with pytest.raises(Conflict):
        store.create_app("shop", "bob", "main")
    assert store.can_access(alice, app) and store.can_access(bob, app)
    assert not store.can_access(carol, app)
    store.add_share("shop", "carol")
    store.add_share("shop", "carol")
    assert store.shares("shop") == ["carol"] and store.can_access(carol, app)
    assert store.remove_share("shop", "carol") and not store.can_access(carol, app)
    assert store.formation("shop") == {"web": 1}


def test_config_round_trip_is_exact_and_encrypted(store, tmp_path):
    store.create_app("shop", "a", "main")
    values = {"A": "x=y", "B": "$HOME 'q' \"dq\"", "C": "ünïcødé ☃", "D": "line1\nline2",
              "E": ""}
    store.set_config("shop", values)
    assert store.get_config("shop") == values
    store.set_config("shop", {"A": "new"}, unset=["B"])
    got = store.get_config("shop")
    assert got["A"] == "new" and "B" not in got
    with store.db.transaction() as cur:
        raw = cur.execute("SELECT value FROM gp_config WHERE app = ? AND name = 'C'",
                          ("shop",)).one()[0]
    assert "ünïcødé".encode() not in bytes(raw)


def test_releases_versions_and_activation(store):
    store.create_app("shop", "a", "main")
    r1 = store.add_release("shop", "img:v1", "abc", {"SECRET": "s3"}, {"web": "run"},
                           "Deploy abc", "alice")
    r2 = store.add_release("shop", "img:v2", "def", {}, {}, "Deploy def", "alice")
    assert (r1.version, r2.version) == (1, 2)
    assert store.get_app("shop").current_version is None
    store.activate_release("shop", 1)
    assert store.current_release("shop").config == {"SECRET": "s3"}
    assert store.get_release("shop", 1).status == "succeeded"
    store.set_release_status("shop", 2, "failed")
    assert [r.version for r in store.list_releases("shop")] == [2, 1]
    r3 = store.add_release("shop", lambda v: f"img:v{v}", "0ab", {}, {}, "Deploy 0ab", "alice")
    assert (r3.version, r3.image) == (3, "img:v3")  # the tag of the version allocated
    assert store.get_release("shop", 3).image == "img:v3"
    with pytest.raises(NotFound):
        store.get_release("shop", 9)


def test_concurrent_release_numbers_are_unique(store):
    store.create_app("shop", "a", "main")
    errors = []

    def add():
        try:
            for _ in range(5):
                store.add_release("shop", "img", "c", {}, {}, "d", "a")
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=add) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    versions = sorted(r.version for r in store.list_releases("shop"))
    assert errors == []
    assert versions == list(range(1, 21))


def test_domains_and_delete_app(store):
    store.create_app("shop", "a", "main")
    store.create_app("blog", "a", "main")
    store.add_domain("shop", "www.shop.example")
    with pytest.raises(Conflict):
        store.add_domain("blog", "www.shop.example")
    assert store.domain_owner("www.shop.example") == "shop"
    store.set_config("shop", {"A": "1"})
    store.record_event("alice", "deploy", "shop", "v1")
    assert store.events("shop")[0][1:4] == ("alice", "deploy", "shop")
    store.delete_app("shop")
    assert store.find_app("shop") is None and store.domains("shop") == []
    assert store.get_config("shop") == {}


def test_datastores_and_mounts(store):
    store.create_app("blog", "a", "main")
    found = store.add_datastore("blog", "mysql", "gitpaas_blog", "gitpaas_blog")
    assert store.datastores("blog") == [found]
    assert store.find_datastore("blog", "mysql") == found
    assert store.find_datastore("blog", "redis") is None
    with pytest.raises(Conflict):
        store.add_datastore("blog", "mysql", "other", "other")
    store.add_mount("blog", "/data/storage/blog/uploads", "/var/www/uploads")
    with pytest.raises(Conflict):
        store.add_mount("blog", "/data/storage/blog/other", "/var/www/uploads")
    assert [(m.host_path, m.container_path) for m in store.mounts("blog")] == [
        ("/data/storage/blog/uploads", "/var/www/uploads")]
    with pytest.raises(NotFound):
        store.remove_mount("blog", "/data/storage/blog/other", "/var/www/uploads")
    store.remove_datastore("blog", "mysql")
    assert store.datastores("blog") == []
    store.add_datastore("blog", "mysql", "gitpaas_blog", "gitpaas_blog")
    store.delete_app("blog")
    assert store.datastores("blog") == [] and store.mounts("blog") == []


def test_events_belong_to_an_apps_identity_not_its_name(store):
    """Issue 11, finding 9: a new app of a destroyed app's name sees none of its history."""
    store.create_app("oldapp", "victim", "main")
    store.record_event("victim", "config:set", "oldapp", "SECRET_TOKEN")
    store.record_event("victim", "domains:add", "oldapp", "private.victim.example")
    store.record_event("victim", "apps:destroy", "oldapp")
    store.delete_app("oldapp")
    store.create_app("oldapp", "mal", "main")
    store.record_event("mal", "apps:create", "oldapp")
    assert [e[1:4] for e in store.events("oldapp")] == [("mal", "apps:create", "oldapp")]
    assert [e[2] for e in store.events(None, 100, apps=["oldapp"])] == ["apps:create"]
    assert store.events(None, 100, apps=[]) == []
    assert [e[2] for e in store.events(None)][:4] == ["apps:create", "apps:destroy",
                                                      "domains:add", "config:set"]


def test_migration_5_gives_existing_apps_their_events_since_creation(store):
    store.create_app("shop", "alice", "main")
    with store.db.transaction() as cur:
        cur.execute("ALTER TABLE gp_events DROP COLUMN app_uid")
        cur.execute("ALTER TABLE gp_apps DROP COLUMN uid")
        cur.execute("UPDATE gp_meta SET value = '4' WHERE name = 'schema'")
        created = cur.execute("SELECT created_at FROM gp_apps WHERE name = 'shop'").one()[0]
        for when, action in ((created - 100, "previous owner"), (created + 1, "mine")):
            cur.execute("INSERT INTO gp_events (app, actor, action, detail, created_at)"
                        " VALUES ('shop', 'x', ?, '', ?)", (action, when))
    store.migrate()
    assert store.schema_version() >= 5
    assert [e[2] for e in store.events("shop")] == ["mine"]
    store.record_event("alice", "later", "shop")
    assert [e[2] for e in store.events("shop")] == ["later", "mine"]


def test_a_network_is_claimed_by_one_app_only_and_never_by_a_later_namesake(store):
    """Issue 17 (spare app networks): one app per network, ever; the claim is by the app's
    identity, so an app of the same name made after a destroy inherits nothing."""
    store.create_app("a", "admin", "main")
    store.create_app("b", "admin", "main")
    assert store.app_network("a") is None
    assert store.claim_app_network("a", "gp.spare_1") == "gp.spare_1"
    assert store.claim_app_network("b", "gp.spare_1") is None  # taken
    assert store.claim_app_network("a", "gp.spare_2") == "gp.spare_1"  # it has one
    assert store.claim_app_network("nosuch", "gp.spare_3") is None
    assert store.app_network("a") == "gp.spare_1" and store.app_network("b") is None
    store.delete_app("a")
    assert store.claimed_networks() == {"gp.spare_1": None}  # a leftover, not a spare
    store.create_app("a", "admin", "main")
    assert store.app_network("a") is None
    assert store.claim_app_network("a", "gp.spare_1") is None  # never handed out again
    store.forget_app_network("gp.spare_1")
    assert store.claimed_networks() == {}


def test_concurrent_claims_of_one_network_have_one_winner(store):
    apps = [f"c{i}" for i in range(8)]
    for app in apps:
        store.create_app(app, "admin", "main")
    results: dict[str, str | None] = {}
    barrier = threading.Barrier(len(apps))

    def claim(app: str) -> None:
        barrier.wait()
        results[app] = store.claim_app_network(app, "gp.spare_x")

    threads = [threading.Thread(target=claim, args=(a,)) for a in apps]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [a for a, r in results.items() if r == "gp.spare_x"]
    assert len(winners) == 1 and len(results) == len(apps)
    assert store.claimed_networks() == {"gp.spare_x": winners[0]}
