"""Issue 7, point 9: every mutating command records who did what to which app.

Runs each command through the registry against a real (SQLite) store and fake Docker,
Redis and deployer. Every registered command must be listed here as read-only or
mutating, so a new command cannot skip the audit trail unnoticed.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field

import paramiko
import pytest

from gitpaas import settings as settings_mod
from gitpaas import sshkeys
from gitpaas.commands import load_all
from gitpaas.commands.registry import COMMANDS, Context, run_command
from gitpaas.edge.certs import CertManager
from gitpaas.platform import Platform
from tests.unit.test_certs import FakeSignals, make_cert

READ_ONLY = {"help", "version", "apps", "apps:info", "config", "config:get", "ps",
             "releases", "logs", "domains", "sharing", "routes", "events", "resources",
             "keys", "mysql:info", "mysql:export", "storage", "cron", "postgres:info",
             "postgres:export", "drains", "redis:info", "edge", "certs", "backups",
             "doctor", "hosts", "hosts:add"}
# Mutating, and their events are checked end to end (they need restic):
# tests/e2e/test_backups.py.
END_TO_END = {"backups:create", "backups:restore"}

# Recorded, but they need a real container: tests/e2e/test_run_enter.py checks their events;
# or a real swarm: tests/e2e/test_swarm.py (hosts:drain, hosts:activate).
AUDITED_IN_E2E = {"run", "enter", "hosts:drain", "hosts:activate"}

# command -> (argv after the name, recorded action, recorded app)
MUTATING = {
    "apps:create": (["blog"], "apps:create", "blog"),
    "config:set": (["shop", "A=1"], "config", "shop"),
    "config:unset": (["shop", "A"], "config", "shop"),
    "domains:add": (["shop", "www.example.com"], "domains:add", "shop"),
    "domains:remove": (["shop", "www.example.com"], "domains:remove", "shop"),
    "sharing:add": (["shop", "bob"], "sharing:add", "shop"),
    "sharing:remove": (["shop", "bob"], "sharing:remove", "shop"),
    "ps:scale": (["shop", "web=2"], "ps:scale", "shop"),
    "ps:restart": (["shop"], "ps:restart", "shop"),
    "ps:stop": (["shop"], "ps:stop", "shop"),
    "ps:start": (["shop"], "ps:start", "shop"),
    "rollback": (["shop", "v1"], "rollback", "shop"),
    "git:set": (["shop", "deploy-branch", "release/*"], "git:set", "shop"),
    "buildpacks:set": (["shop", "static"], "buildpacks:set", "shop"),
    "resources:set": (["shop", "--memory", "256m"], "resources:set", "shop"),
    "storage:mount": (["shop", "uploads:/data"], "storage:mount", "shop"),
    "storage:unmount": (["shop", "uploads:/data"], "storage:unmount", "shop"),
    "mysql:create": (["shop"], "mysql:create", "shop"),
    "mysql:import": (["shop"], "mysql:import", "shop"),
    "mysql:destroy": (["shop", "--confirm", "shop"], "mysql:destroy", "shop"),
    "edge:set": (["shop", "proxy-read-timeout=60"], "edge:set", "shop"),
    "drains:add": (["shop", "syslog+tcp://127.0.0.1:5514"], "drains:add", "shop"),
    "drains:remove": (["shop", "syslog+tcp://127.0.0.1:5514"], "drains:remove", "shop"),
    "redis:create": (["shop"], "redis:create", "shop"),
    "redis:destroy": (["shop", "--confirm", "shop"], "redis:destroy", "shop"),
    "postgres:create": (["shop"], "postgres:create", "shop"),
    "postgres:import": (["shop"], "postgres:import", "shop"),
    "postgres:destroy": (["shop", "--confirm", "shop"], "postgres:destroy", "shop"),
    "keys:add": (["carol", "-"], "keys:add", None),
    "keys:remove": (["carol"], "keys:remove", None),
    "certs:add": (["shop"], "certs:add", "shop"),
    "certs:remove": (["shop", "shop.paas.localhost"], "certs:remove", "shop"),
    "apps:destroy": (["blog", "--confirm", "blog"], "apps:destroy", "blog"),
}


@dataclass
class FakeRoutes:
    table: dict = field(default_factory=dict)

    def swap(self, app, hosts, backends):
        for h in hosts:
            self.table[h] = [app, *backends] if backends else []

    def remove(self, hosts):
        self.swap("", hosts, [])

    def get(self, host):
        return self.table.get(host, [])

    def all(self):
        return dict(self.table)

    def set_edge_settings(self, app, values, hosts):
        self.table[f"edge:{app}"] = dict(values)


class FakeVolumes:
    def remove_app(self, app):
        pass


class FakeRuntime:
    volumes = FakeVolumes()

    def list(self, app=None, release=None, all_states=True):
        return []

    def remove(self, containers, stop_timeout=10):
        pass

    def remove_network(self, app):
        pass


class FakeBuilder:
    def remove(self, tag):
        pass


class FakeDeployer:
    """Records releases like the real one, starts nothing."""

    def __init__(self, platform):
        self.platform = platform
        self.builder = FakeBuilder()

    def hosts(self, app):
        return [f"{app}.{self.platform.settings.domain}", *self.platform.store.domains(app)]

    def deploy_release(self, app, source, config, description, actor, progress):
        store = self.platform.store
        release = store.add_release(app, source.image, source.commit, config,
                                    source.processes, description, actor)
        store.activate_release(app, release.version)
        return release

    def start_release(self, app, release, progress):
        pass

    def wait_retired(self, timeout=60):
        pass

    def remove_images(self, app):
        pass


class FakeMySQL:
    """Databases that exist only here."""

    def create(self, app):
        from gitpaas.datastores.mysql import Credentials

        return Credentials("127.0.0.1", 3306, f"db_{app}", f"u_{app}", "pw")

    def destroy(self, database, user):
        pass

    def import_(self, creds, stdin):
        return len(stdin.read())

    def export(self, database, write, closed):
        write("-- dump\n")
        return 8

    def stats(self, database):
        return {"tables": 0, "bytes": 0}


class FakePostgres:
    """PostgreSQL databases that exist only here."""

    def create(self, app):
        from gitpaas.datastores.postgres import Credentials

        return Credentials("127.0.0.1", 5432, f"db_{app}", f"u_{app}", "pw")

    def destroy(self, database, role):
        pass

    def import_(self, creds, stdin):
        return len(stdin.read())

    def export(self, database, write, closed):
        write(b"PGDMP")
        return 5

    def stats(self, database):
        return {"tables": 0, "bytes": 0}


class FakeRedisStores:
    """Redis servers that exist only here."""

    def create(self, app):
        from gitpaas.datastores.redis import Credentials

        return Credentials(f"t-redis-{app}", 6379, "pw")

    def wait_ready(self, app, password):
        pass

    def destroy(self, app):
        pass

    def stats(self, app, password):
        return {"state": "running"}


def make_key(store, name):
    key = paramiko.ECDSAKey.generate(bits=256)
    blob = key.asbytes()
    return store.add_key(name, sshkeys.fingerprint(blob), f"{key.get_name()} {key.get_base64()}")


@pytest.fixture
def platform(tmp_path):
    p = Platform(settings_mod.load({"data_dir": tmp_path / "data", "instance": "audit"},
                                   environ={}))
    p.__dict__.update(routes=FakeRoutes(), runtime=FakeRuntime(), deployer=FakeDeployer(p),
                      mysql=FakeMySQL(), postgres=FakePostgres(),
                      redis_stores=FakeRedisStores())
    p.__dict__["certs"] = CertManager(p, signals=FakeSignals())
    return p


def run(platform, key, argv, stdin=b""):
    out, err = [], []
    ctx = Context(platform, key, io.BytesIO(stdin), out.append, err.append)
    return run_command(ctx, argv), "".join(out), "".join(err)


def test_every_command_is_classified():
    load_all()
    assert set(COMMANDS) == READ_ONLY | set(MUTATING) | AUDITED_IN_E2E | END_TO_END, \
        "classify new commands here"


def test_every_mutating_command_records_an_event(platform):
    store = platform.store
    admin = make_key(store, "admin")
    make_key(store, "bob")
    store.create_app("shop", "admin", "main")
    store.activate_release("shop", store.add_release(
        "shop", "x/shop:v1", "c" * 40, {}, {"web": "run"}, "Deploy", "admin").version)
    carol = paramiko.ECDSAKey.generate(bits=256)
    carol_line = f"{carol.get_name()} {carol.get_base64()} carol\n".encode()
    chain, cert_key = make_cert(["shop.paas.localhost"], time.time() + 30 * 86400)
    stdin = {"keys:add": carol_line, "certs:add": chain + cert_key}
    for name, (args, action, app) in MUTATING.items():
        before = len(store.events(None, 10_000))
        code, out, err = run(platform, admin, [name, *args], stdin.get(name, b""))
        assert code == 0, (name, out, err)
        events = store.events(None, 10_000)
        new = [e[1:4] for e in events[: len(events) - before]]
        assert new, f"{name} recorded no event"
        # the command's own event comes last (a config change it makes may add one)
        assert new[0] == ("admin", action, app), (name, new)


def test_buildpacks_unset_is_recorded(platform):
    store = platform.store
    admin = make_key(store, "admin")
    store.create_app("shop", "admin", "main")
    assert run(platform, admin, ["buildpacks:set", "shop", "--unset"])[0] == 0
    assert store.events("shop")[0][1:4] == ("admin", "buildpacks:set", "shop")


def test_events_app_shows_them_to_the_app_s_users(platform):
    store = platform.store
    admin = make_key(store, "admin")
    store.create_app("shop", "admin", "main")
    run(platform, admin, ["config:set", "shop", "--no-restart", "K=v"])
    code, out, _ = run(platform, admin, ["events", "shop"])
    assert code == 0 and "admin" in out and "config" in out and "shop" in out
