"""Issue 13: the apps service checks access in every method and records what it changed.

A real (SQLite) store with fake Docker, Redis and deployer (``test_audit_trail``'s).
"""

from __future__ import annotations

import pytest

from gitpaas.errors import Conflict, Forbidden, InvalidInput, NotFound
from gitpaas.services.access import Access
from gitpaas.services.apps import Apps
from tests.unit.test_audit_trail import make_key, platform  # noqa: F401 - a fixture

STRANGER_CALLS = {
    "info": ("shop",), "destroy": ("shop", "shop", print), "stop": ("shop", print),
    "start": ("shop", print), "processes": ("shop",), "domains": ("shop",),
    "add_domain": ("shop", "www.example.com"), "remove_domain": ("shop", "www.example.com"),
    "sharing": ("shop",), "share": ("shop", "carol"), "unshare": ("shop", "carol"),
    "routes": ("shop",), "run": ("shop", ["sh"], None, "run"),
    "enter": ("shop", None, ["sh"], lambda: None),
}


@pytest.fixture
def keys(platform):  # noqa: F811 - the fixture above
    store = platform.store
    keys = {name: make_key(store, name) for name in ("root", "alice", "bob", "carol")}
    assert keys["root"].is_admin and not keys["alice"].is_admin  # the first key is admin
    store.create_app("shop", "alice", "main")
    store.activate_release("shop", store.add_release(
        "shop", "x/shop:v1", "c" * 40, {}, {"web": "run"}, "Deploy", "alice").version)
    return keys


def events(platform, app="shop"):  # noqa: F811
    return [e[1:5] for e in platform.store.events(app, 100)]


@pytest.mark.parametrize("method", sorted(STRANGER_CALLS))
def test_a_stranger_learns_nothing_and_changes_nothing(platform, keys, method):  # noqa: F811
    bob = keys["bob"]
    before = events(platform)
    with pytest.raises(NotFound, match="no app named 'shop', or you may not use it"):
        getattr(Apps(platform, bob), method)(*STRANGER_CALLS[method])
    assert events(platform) == before and platform.store.find_app("shop") is not None


def test_a_collaborator_may_use_but_not_destroy_nor_share(platform, keys):  # noqa: F811
    alice, bob = keys["alice"], keys["bob"]
    Apps(platform, alice).share("shop", "bob")
    apps = Apps(platform, bob)
    assert apps.info("shop")["owner"] == "alice"
    with pytest.raises(Forbidden, match="only the owner of shop or an admin may destroy it"):
        apps.destroy("shop", "shop", print)
    with pytest.raises(Forbidden, match="may share it"):
        apps.share("shop", "carol")
    with pytest.raises(Forbidden, match="may see who shares it"):
        apps.sharing("shop")
    assert Apps(platform, alice).sharing("shop").shared_with == ["bob"]


def test_destroy_needs_the_confirmation(platform, keys):  # noqa: F811
    apps = Apps(platform, keys["alice"])
    for confirm in (None, "blog"):
        with pytest.raises(InvalidInput, match="this destroys shop and its data: add"
                                               " --confirm shop"):
            apps.destroy("shop", confirm, print)
    said: list[str] = []
    apps.destroy("shop", "shop", said.append)
    assert platform.store.find_app("shop") is None and said == ["-----> Destroying shop"]


def test_stop_and_start_record_and_route(platform, keys):  # noqa: F811
    apps = Apps(platform, keys["alice"])
    platform.routes.swap("shop", ["shop.paas.localhost"], ["http://127.0.0.1:1"])
    written: list[str] = []
    apps.stop("shop", written.append)
    assert written == ["Stopping shop... "]
    assert platform.routes.get("shop.paas.localhost") == []
    assert platform.store.current_release("shop").status == "stopped"
    assert apps.start("shop", written.append).version == 1
    assert [e[1] for e in events(platform)][:2] == ["ps:start", "ps:stop"]


def test_a_failed_change_records_nothing(platform, keys):  # noqa: F811
    access = Access(platform, keys["alice"])
    with pytest.raises(Conflict), access.change("shop", "domains:add") as change:
        change.detail = "x"
        raise Conflict("taken")
    assert "domains:add" not in [e[1] for e in events(platform)]
    with access.change("shop", "domains:add") as change:
        change.detail = "www.example.com"
    assert events(platform)[0] == ("alice", "domains:add", "shop", "www.example.com")


def test_domains_are_routed_at_once_and_checked(platform, keys):  # noqa: F811
    apps = Apps(platform, keys["alice"])
    platform.routes.swap("shop", ["shop.paas.localhost"], ["http://127.0.0.1:1"])
    apps.add_domain("shop", "www.example.com")
    assert platform.routes.get("www.example.com") == ["shop", "http://127.0.0.1:1"]
    assert apps.domains("shop") == ("shop.paas.localhost", ["www.example.com"])
    with pytest.raises(Forbidden, match="only admins may add [*].example.org: wildcards"):
        apps.add_domain("shop", "*.example.org")
    with pytest.raises(InvalidInput):
        apps.add_domain("shop", "not a host")
    apps.remove_domain("shop", "www.example.com")
    assert platform.routes.get("www.example.com") == []
