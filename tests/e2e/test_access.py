"""Who may run what: each command as admin, owner, collaborator and stranger.

The app ``acl`` is created (not pushed) by ``owner`` and shared with ``collab``; commands
that need a release answer "no release yet" to those who may use the app, and strangers
get the same "not found" as for a missing app.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.timeout(300)

NOT_FOUND = " !     no app named 'acl', or you may not use it\n"
NO_APPS = " !     you have no apps yet: push one, or name it with --app APP\n"
ROLES = ("admin", "owner", "collab", "stranger")
EVERYONE_BUT_STRANGER = {"admin", "owner", "collab"}
OWNER_OR_ADMIN = {"admin", "owner"}

# (argv with {role} filled in, who may run it)
MATRIX = [
    (["apps:info", "acl"], EVERYONE_BUT_STRANGER),
    (["config:set", "acl", "K_{role}=v"], EVERYONE_BUT_STRANGER),
    (["config:get", "acl", "K_{role}"], EVERYONE_BUT_STRANGER),
    (["config", "acl"], EVERYONE_BUT_STRANGER),
    (["config:unset", "acl", "K_{role}"], EVERYONE_BUT_STRANGER),
    (["ps", "acl"], EVERYONE_BUT_STRANGER),
    (["ps:scale", "acl", "web=1"], EVERYONE_BUT_STRANGER),
    (["ps:stop", "acl"], EVERYONE_BUT_STRANGER),
    (["releases", "acl"], EVERYONE_BUT_STRANGER),
    (["logs", "acl"], EVERYONE_BUT_STRANGER),
    (["domains", "acl"], EVERYONE_BUT_STRANGER),
    (["domains:add", "acl", "{role}.acl.test"], EVERYONE_BUT_STRANGER),
    (["domains:remove", "acl", "{role}.acl.test"], EVERYONE_BUT_STRANGER),
    (["routes", "acl"], EVERYONE_BUT_STRANGER),
    (["events", "acl"], EVERYONE_BUT_STRANGER),
    (["sharing", "acl"], OWNER_OR_ADMIN),
    (["sharing:add", "acl", "extra"], OWNER_OR_ADMIN),
    (["sharing:remove", "acl", "extra"], OWNER_OR_ADMIN),
]
# May run, but the app has no release: exit 1 with another message than "not found".
NEEDS_RELEASE = [["ps:restart", "acl"], ["ps:start", "acl"], ["rollback", "acl"],
                 ["rollback", "acl", "v1"]]


@pytest.fixture(scope="module")
def keys(server):
    made = {"admin": server.admin_key}
    for role in ("owner", "collab", "stranger", "extra"):
        made[role] = server.add_key(role)
    result = server.ssh("apps:create", "acl", key=made["owner"])
    assert result.returncode == 0, result.stderr
    result = server.ssh("sharing:add", "acl", "collab", key=made["owner"])
    assert result.returncode == 0, result.stderr
    return made


@pytest.mark.parametrize("role", ROLES)
def test_matrix(server, keys, role):
    for argv, allowed in MATRIX:
        argv = [a.format(role=role) for a in argv]
        result = server.ssh(*argv, key=keys[role])
        if role in allowed:
            assert result.returncode == 0, (role, argv, result.stderr)
        elif role == "stranger":
            # Exactly what a missing app answers (config:unset takes any number of
            # arguments: its first is the app only when it names one the key may use).
            missing = server.ssh(*[a.replace("acl", "nosuchapp") for a in argv],
                                 key=keys[role])
            assert result.returncode == missing.returncode == 1, (role, argv)
            assert result.stderr == missing.stderr.replace("nosuchapp", "acl"), argv
            assert result.stderr in {NOT_FOUND, NO_APPS}, (role, argv, result.stderr)
        else:
            assert result.returncode == 1, (role, argv)
            assert "only the owner of acl or an admin may" in result.stderr, (role, argv)
    for argv in NEEDS_RELEASE:
        result = server.ssh(*argv, key=keys[role])
        assert result.returncode == 1, (role, argv)
        if role == "stranger":
            assert result.stderr == NOT_FOUND, argv
        else:
            assert "acl has no release yet" in result.stderr, (role, argv)


def test_listings_show_only_reachable_apps(server, keys):
    for role, expected in (("admin", "acl"), ("owner", "acl"), ("collab", "acl"),
                           ("stranger", None)):
        out = server.ssh("apps", key=keys[role]).stdout
        assert ("acl" in out) == (expected is not None), role
        events = server.ssh("events", key=keys[role]).stdout
        assert ("acl" in events) == (expected is not None), role
        routes = server.ssh("routes", "--json", key=keys[role])
        assert routes.returncode == 0
    # the app may be left out when the key reaches exactly one app
    assert server.ssh("ps", key=keys["collab"]).returncode == 0
    no_apps = server.ssh("ps", key=keys["stranger"])
    assert no_apps.returncode == 1 and "you have no apps yet" in no_apps.stderr
    # a missing app and a forbidden one look the same to a stranger
    missing = server.ssh("config", "nosuch", key=keys["stranger"])
    assert missing.stderr == " !     no app named 'nosuch', or you may not use it\n"


def test_keys_are_admin_only(server, keys):
    assert server.ssh("keys", key=keys["admin"]).returncode == 0
    for role in ("owner", "collab", "stranger"):
        for argv in (["keys"], ["keys:add", "x"]):
            result = server.ssh(*argv, key=keys[role], input="")
            assert (result.returncode, result.stderr) == (1, " !     only admins may do that\n")
        # keys:remove is also an owner's, for the deploy keys of its apps only.
        result = server.ssh("keys:remove", "extra", key=keys[role])
        assert (result.returncode, result.stderr) == (
            1, " !     only admins, or the owner of a deploy key's app, may remove a key\n")
    assert "\n  keys " not in server.ssh("help", key=keys["owner"]).stdout


def test_destroy_is_for_the_owner_or_an_admin(server, keys):
    collab = server.ssh("apps:destroy", "acl", "--confirm", "acl", key=keys["collab"])
    assert collab.returncode == 1 and "only the owner of acl" in collab.stderr
    stranger = server.ssh("apps:destroy", "acl", "--confirm", "acl", key=keys["stranger"])
    assert stranger.stderr == NOT_FOUND
    owner = server.ssh("apps:destroy", "acl", "--confirm", "acl", key=keys["owner"])
    assert owner.returncode == 0, owner.stderr
    assert server.ssh("apps", "--json", key=keys["admin"]).stdout.strip() == "[]"
