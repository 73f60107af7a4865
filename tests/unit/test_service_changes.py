"""Issue 13: the services behind config, datastores, keys, drains, storage, git settings,
releases, edge settings and certificates: each checks access, changes the store under the
app's lock, records the change, and a failed change records and keeps nothing.

A real (SQLite) store with fake Docker, Redis and deployer (``test_audit_trail``'s).
"""

from __future__ import annotations

import time

import paramiko
import pytest

from gitpaas.errors import Conflict, DeployError, Forbidden, InvalidInput, NotFound
from gitpaas.services.access import Access
from gitpaas.services.apps import Apps
from gitpaas.services.certs import Certs
from gitpaas.services.config import Config
from gitpaas.services.datastores import MYSQL, REDIS, Datastores
from gitpaas.services.drains import Drains
from gitpaas.services.edge import EdgeSettings
from gitpaas.services.gitsettings import AppSettings
from gitpaas.services.keys import Keys
from gitpaas.services.releases import Releases
from gitpaas.services.storage import Storage
from tests.unit.test_audit_trail import make_key, platform  # noqa: F401 - a fixture
from tests.unit.test_certs import make_cert

DRAIN = "syslog+tcp://127.0.0.1:5514"


def said() -> tuple[list[str], object]:
    out: list[str] = []
    return out, out.append


# service -> {method: args}; every one names the app "shop" first.
STRANGER_CALLS = {
    Config: {"values": ("shop",), "get": ("shop", "A"),
             "change": ("shop", {"A": "1"}, [], False, "Set A", "Setting", print)},
    Datastores: {"create": (MYSQL, "shop", False, print), "info": (MYSQL, "shop", False),
                 "destroy": (MYSQL, "shop", "shop", print),
                 "export": (MYSQL, "shop", print, lambda: False),
                 "import_": (MYSQL, "shop", None)},
    Drains: {"list": ("shop",), "add": ("shop", DRAIN), "remove": ("shop", DRAIN)},
    Storage: {"list": ("shop",), "mount": ("shop", "uploads:/data"),
              "unmount": ("shop", "uploads:/data")},
    AppSettings: {"set_deploy_branch": ("shop", "release/*"),
                  "set_buildpack": ("shop", "static"), "resources": ("shop",),
                  "set_resources": ("shop", "*", "128m", None)},
    Releases: {"list": ("shop", 10), "formation": ("shop",),
               "scale": ("shop", {"web": 2}, print), "restart": ("shop", print),
               "rollback": ("shop", 1, print)},
    EdgeSettings: {"show": ("shop",), "set": ("shop", [("proxy-read-timeout", "60")])},
    Certs: {"report": ("shop",), "remove": ("shop", "shop.paas.localhost")},
}


@pytest.fixture
def keys(platform):  # noqa: F811 - the fixture above
    store = platform.store
    keys = {name: make_key(store, name) for name in ("root", "alice", "bob")}
    store.create_app("shop", "alice", "main")
    store.activate_release("shop", store.add_release(
        "shop", "x/shop:v1", "c" * 40, {"A": "1"}, {"web": "run"}, "Deploy", "alice").version)
    store.set_config("shop", {"A": "1"}, [])
    return keys


def events(platform, app="shop"):  # noqa: F811
    return [e[1:5] for e in platform.store.events(app, 100)]


def fail_roll_outs(platform):  # noqa: F811
    def deploy_release(*_args, **_kwargs):
        raise DeployError("health check failed")

    platform.deployer.deploy_release = deploy_release


@pytest.mark.parametrize(("service", "method"),
                         [(s, m) for s, calls in STRANGER_CALLS.items() for m in calls],
                         ids=lambda v: getattr(v, "__name__", v))
def test_a_stranger_learns_nothing_and_changes_nothing(platform, keys, service,  # noqa: F811
                                                       method):
    before = events(platform)
    with pytest.raises(NotFound, match="no app named 'shop', or you may not use it"):
        getattr(service(platform, keys["bob"]), method)(*STRANGER_CALLS[service][method])
    assert events(platform) == before
    assert platform.store.get_config("shop") == {"A": "1"}
    assert platform.store.current_release("shop").version == 1


def test_config_change_rolls_out_then_stores_and_records(platform, keys):  # noqa: F811
    config = Config(platform, keys["alice"])
    out, write = said()
    config.change("shop", {"B": "2"}, [], False, "Set B", "Setting", write)
    assert "".join(out) == "Setting B and restarting shop... done, v2\n"
    assert platform.store.current_release("shop").config == {"A": "1", "B": "2"}
    assert config.values("shop") == {"A": "1", "B": "2"} and config.get("shop", "B") == "2"
    assert events(platform)[0] == ("alice", "config", "shop", "Set B")
    out.clear()
    config.change("shop", {}, ["A"], True, "Unset A", "Unsetting", write)
    assert "".join(out).startswith("Unsetting A on shop... done (stored; --no-restart")
    assert platform.store.current_release("shop").version == 2
    with pytest.raises(NotFound, match="shop has no config var A"):
        config.change("shop", {}, ["A"], False, "Unset A", "Unsetting", write)


def test_a_failed_config_roll_out_keeps_the_old_config(platform, keys):  # noqa: F811
    fail_roll_outs(platform)
    out, write = said()
    before = events(platform)
    with pytest.raises(DeployError):
        Config(platform, keys["alice"]).change("shop", {"B": "2"}, [], False, "Set B",
                                               "Setting", write)
    assert "".join(out) == "Setting B and restarting shop... failed\n"
    assert platform.store.get_config("shop") == {"A": "1"} and events(platform) == before


def test_a_datastore_sets_its_config_and_a_failed_roll_out_drops_it(platform,  # noqa: F811
                                                                    keys):
    stores = Datastores(platform, keys["alice"])
    out, write = said()
    stores.create(MYSQL, "shop", False, write)
    assert "-----> Created MySQL database db_shop for shop\n" in out
    assert platform.store.find_datastore("shop", "mysql").name == "db_shop"
    assert "DATABASE_URL" in platform.store.current_release("shop").config
    assert [e[1] for e in events(platform)][:2] == ["mysql:create", "config"]
    masked = Config(platform, keys["alice"]).values("shop", reveal=False)
    assert "pw" not in masked["DATABASE_URL"]
    with pytest.raises(InvalidInput, match="add --confirm shop"):
        stores.destroy(MYSQL, "shop", None, write)
    stores.destroy(MYSQL, "shop", "shop", write)
    assert platform.store.find_datastore("shop", "mysql") is None
    assert "DATABASE_URL" not in platform.store.get_config("shop")
    fail_roll_outs(platform)
    with pytest.raises(DeployError):
        stores.create(REDIS, "shop", False, write)
    assert platform.store.find_datastore("shop", "redis") is None
    assert "REDIS_URL" not in platform.store.get_config("shop")


def test_keys_added_and_removed_by_whom_may(platform, keys):  # noqa: F811
    line = paramiko.ECDSAKey.generate(bits=256)
    text = f"{line.get_name()} {line.get_base64()} ci"
    alice = Keys(platform, keys["alice"])
    read: list[int] = []

    def read_key() -> str:
        read.append(1)
        return text

    with pytest.raises(Forbidden, match="only admins may do that"):
        alice.add("ci", read_key, None)
    with pytest.raises(NotFound):
        Keys(platform, keys["bob"]).add("ci", read_key, "shop")
    assert not read  # the key is read only once the checks passed
    added, fingerprint = alice.add("ci", read_key, "shop")
    assert added.deploy_app == "shop" and fingerprint.startswith("SHA256:")
    assert platform.store.events(None, 1)[0][1:5] == ("alice", "keys:add", "shop",
                                                      "ci (deploy key)")
    refusal = "only admins, or the owner of a deploy key's app, may remove a key"
    for name in ("ci", "root", "nobody"):
        with pytest.raises(Forbidden, match=refusal):
            Keys(platform, keys["bob"]).remove(name)
    with pytest.raises(InvalidInput, match="the key you are using"):
        alice.remove("alice")
    assert alice.remove("ci") == []
    assert "ci" not in [k.name for k in Keys(platform, keys["root"]).all()]


def test_drains_added_and_removed(platform, keys):  # noqa: F811
    drains = Drains(platform, keys["root"])  # an admin: a drain to a local address
    drains.add("shop", DRAIN)
    assert [d["url"] for d in drains.list("shop")] == [DRAIN]
    assert events(platform)[0] == ("root", "drains:add", "shop", DRAIN)
    with pytest.raises(Forbidden, match="only admins may drain to private"):
        Drains(platform, keys["alice"]).add("shop", "syslog+tcp://127.0.0.1:5515")
    drains.remove("shop", DRAIN)
    assert drains.list("shop") == []
    before = events(platform)
    with pytest.raises(NotFound, match="shop has no drain"):
        drains.remove("shop", DRAIN)
    assert events(platform) == before


def test_storage_mounted_and_unmounted(platform, keys):  # noqa: F811
    storage = Storage(platform, keys["alice"])
    assert storage.mount("shop", "uploads:/data") == ("uploads", "/data")
    mounts, pinned = storage.list("shop")
    assert [(m.host_path, m.container_path, m.volume) for m in mounts] == [
        ("uploads", "/data", "audit.shop.uploads")] and pinned is None
    with pytest.raises(Conflict, match="/data/x overlaps /data"):
        storage.mount("shop", "cache:/data/x")
    with pytest.raises(Forbidden, match="only an admin may bind a host directory"):
        storage.mount("shop", "/srv:/srv")
    assert storage.unmount("shop", "uploads:/data") == ("uploads", "/data")
    assert storage.list("shop")[0] == []
    assert [e[1] for e in events(platform)][:2] == ["storage:unmount", "storage:mount"]
    with pytest.raises(NotFound, match="shop has no mount uploads:/data"):
        storage.unmount("shop", "uploads:/data")


def test_git_settings_and_resources(platform, keys):  # noqa: F811
    settings = AppSettings(platform, keys["alice"])
    assert settings.set_deploy_branch("shop", "release/*") == "release/*"
    assert platform.store.find_app("shop").deploy_branch == "release/*"
    with pytest.raises(InvalidInput, match="unknown buildpack 'cobol'"):
        settings.set_buildpack("shop", "cobol")
    settings.set_buildpack("shop", "static")
    assert platform.store.find_app("shop").buildpack == "static"
    settings.set_buildpack("shop", None)
    assert platform.store.find_app("shop").buildpack is None
    assert settings.set_resources("shop", "web", "128m", "0.5") == ("128m", 0.5)
    assert settings.resources("shop")["web"] == ("128m", 0.5)
    with pytest.raises(Forbidden, match="above the ceiling"):
        settings.set_resources("shop", "web", "0", None)
    assert [e[1:4] for e in events(platform)][:4] == [
        ("resources:set", "shop", "web memory=128m cpus=0.5"),
        ("buildpacks:set", "shop", "--unset"), ("buildpacks:set", "shop", "static"),
        ("git:set", "shop", "deploy-branch=release/*")]


def test_scale_restart_and_rollback(platform, keys):  # noqa: F811
    releases = Releases(platform, keys["alice"])
    out, write = said()
    assert releases.scale("shop", {"web": 2}, write).version == 2
    assert releases.formation("shop") == {"web": 2} and out == ["Scaling shop to web=2... "]
    with pytest.raises(InvalidInput, match="shop has no process type worker"):
        releases.scale("shop", {"worker": 1}, write)
    assert releases.restart("shop", write).version == 3
    platform.store.set_config("shop", {"B": "2"}, [])
    new = releases.rollback("shop", None, write)
    assert new.version == 4 and platform.store.get_config("shop") == {"A": "1"}
    assert events(platform)[0][1:4] == ("rollback", "shop", "to v2")
    fail_roll_outs(platform)
    out.clear()
    with pytest.raises(DeployError):
        releases.scale("shop", {"web": 3}, write)
    assert out == ["Scaling shop to web=3... ", "failed\n"]
    assert releases.formation("shop") == {"web": 2}  # the old formation is back


def test_edge_settings_are_stored_and_published(platform, keys):  # noqa: F811
    edge = EdgeSettings(platform, keys["alice"])
    edge.set("shop", [("proxy-read-timeout", "60s")])
    stored, defaults = edge.show("shop")
    assert stored == {"proxy-read-timeout": "60"} and "https-redirect" in defaults
    assert platform.routes.table["edge:shop"] == {"proxy_read_timeout": "60"}
    with pytest.raises(InvalidInput, match="unknown edge setting 'gzip'"):
        edge.set("shop", [("gzip", "on")])
    edge.set("shop", [("proxy-read-timeout", "")])
    assert edge.show("shop")[0] == {}
    assert [e[3] for e in events(platform)][:2] == [" proxy-read-timeout=",
                                                    "proxy-read-timeout=60"]


def test_own_certificates_installed_and_removed(platform, keys):  # noqa: F811
    certs = Certs(platform, keys["alice"])
    chain, key = make_cert(["shop.paas.localhost"], time.time() + 30 * 86400)
    hosts, bundle = certs.add("shop", chain, key)
    assert hosts == ["shop.paas.localhost"] and list(bundle.info.names) == ["shop.paas.localhost"]
    assert [r.source for r in certs.report("shop")] == ["own"]
    other, other_key = make_cert(["blog.example.com"], time.time() + 30 * 86400)
    with pytest.raises(InvalidInput, match="covers none of shop's hosts"):
        certs.add("shop", other, other_key)
    certs.remove("shop", "shop.paas.localhost")
    with pytest.raises(NotFound, match="has no certificate"):
        certs.remove("shop", "shop.paas.localhost")
    assert [e[1] for e in events(platform)][:2] == ["certs:remove", "certs:add"]


def test_the_trail_and_the_apps_a_key_may_use(platform, keys):  # noqa: F811
    Drains(platform, keys["root"]).add("shop", DRAIN)
    platform.store.create_app("blog", "bob", "main")
    Access(platform, keys["bob"]).record("apps:create", "blog")
    assert [e[3] for e in Access(platform, keys["alice"]).events(None, 10)] == ["shop"]
    assert {e[3] for e in Access(platform, keys["root"]).events(None, 10)} == {"shop", "blog"}
    assert Access(platform, keys["bob"]).usable("shop") is None
    assert Access(platform, keys["alice"]).usable("shop").name == "shop"
    assert Access(platform, keys["alice"]).usable("not an app") is None
    assert Apps(platform, keys["alice"]).cron("shop") == []
