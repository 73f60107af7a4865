"""Pure parts of the command surface: arguments, encoded values, scale counts, versions."""

from __future__ import annotations

import base64
from types import SimpleNamespace

import pytest

from gitpaas.commands import args as args_mod
from gitpaas.commands.config import decode_value, encode_value, parse_assignments
from gitpaas.commands.ps import parse_scale, uptime
from gitpaas.commands.releases import parse_version, previous_release
from gitpaas.errors import InvalidInput, NotFound, UserError
from gitpaas.store import App, Key, Release


def test_pop_option_forms():
    argv = ["a", "--app", "shop", "-n", "5", "--num=7", "b"]
    assert args_mod.pop_option(argv, "--app", "-a") == "shop"
    assert args_mod.pop_option(argv, "-n", "--num") == "7"
    assert argv == ["a", "b"]
    with pytest.raises(InvalidInput):
        args_mod.pop_option(["--app"], "--app")


def test_assignments_keep_values_exactly():
    values = parse_assignments(["A=b=c", "B=", "C=$HOME 'q' \"d\" ünï", "_D= x "])
    assert values == {"A": "b=c", "B": "", "C": "$HOME 'q' \"d\" ünï", "_D": " x "}


@pytest.mark.parametrize("bad", ["NOEQUALS", "1A=x", "A-B=x", "=x"])
def test_assignments_refuse_bad_keys(bad):
    with pytest.raises(InvalidInput):
        parse_assignments([bad])


def test_encoded_values_round_trip_multiline():
    text = "line 1\nline 2\n\tü\n"
    encoded = encode_value(text)
    assert base64.b64decode(encoded).decode() == text
    assert parse_assignments([f"CERT={encoded}"], encoded=True) == {"CERT": text}
    with pytest.raises(InvalidInput):
        decode_value("not base64!")


def test_parse_scale():
    assert parse_scale(["web=3", "worker=0"]) == {"web": 3, "worker": 0}
    for bad in (["web"], ["web=-1"], ["web=21"], ["Web=1"], ["web=x"], []):
        with pytest.raises(InvalidInput):
            parse_scale(bad)


def test_uptime():
    assert uptime("2024-01-01T00:00:00.5Z", now=1704067200 + 75) == "1m15s"
    assert uptime("2024-01-01T00:00:00Z", now=1704067200 + 7200) == "2h00m"
    assert uptime("") == "-"


def release(version: int, status: str = "succeeded") -> Release:
    return Release("shop", version, "img", "c", {}, {}, "", "k", 0.0, status)


def test_versions_and_previous_release():
    assert parse_version("v3") == 3 and parse_version("12") == 12
    for bad in ("v0", "x3", "v"):
        with pytest.raises(InvalidInput):
            parse_version(bad)
    newest_first = [release(5), release(4, "failed"), release(3), release(2)]
    assert previous_release(newest_first, 5).version == 3
    assert previous_release(newest_first, 2) is None


class FakeStore:
    def __init__(self, apps: list[App], shares: dict[str, list[str]]):
        self.apps = {a.name: a for a in apps}
        self.share = shares

    def list_apps(self):
        return list(self.apps.values())

    def find_app(self, name):
        return self.apps.get(name)

    def can_access(self, key, app):
        return key.is_admin or app.owner == key.name or key.name in self.share.get(app.name, [])


class FakePlatform:
    def __init__(self, store):
        self.store = store

    def app_for(self, key, name):
        app = self.store.find_app(name)
        if app is None or not self.store.can_access(key, app):
            raise NotFound(f"no app named {name!r}, or you may not use it")
        return app


def ctx_for(key_name: str, admin: bool = False):
    apps = [App("shop", "alice", "main", None, 1, 0.0), App("blog", "bob", "main", None, 1, 0.0)]
    platform = FakePlatform(FakeStore(apps, {}))
    return SimpleNamespace(platform=platform, key=Key(key_name, "", "", admin, 0.0))


def test_take_app_positional_explicit_and_implicit():
    alice = ctx_for("alice")
    argv = ["FOO"]
    assert args_mod.take_app(alice, argv).name == "shop" and argv == ["FOO"]
    argv = ["shop", "FOO"]
    assert args_mod.take_app(alice, argv, rest=1).name == "shop" and argv == ["FOO"]
    argv = ["FOO", "-a", "shop"]
    assert args_mod.take_app(alice, argv).name == "shop" and argv == ["FOO"]
    # a stranger learns nothing more than from a missing app
    for argv in (["blog"], ["blog", "FOO"]):
        with pytest.raises(NotFound, match="no app named 'blog', or you may not use it"):
            args_mod.take_app(alice, argv, rest=len(argv) - 1)
    admin = ctx_for("root", admin=True)
    with pytest.raises(UserError, match="which app"):
        args_mod.take_app(admin, [])


def test_one_rule_for_the_app():
    """Issue 13: --app wins; else a first positional naming a usable app; else the key's
    only app with every positional an argument; else a one-line error."""
    alice = ctx_for("alice")
    # config:unset foo bar, git:set deploy-branch 'release/*' (APP omitted)
    for given in (["foo", "bar"], ["deploy-branch", "release/*"], ["blog", "FOO"]):
        argv = list(given)
        assert args_mod.take_app(alice, argv).name == "shop" and argv == given
    argv = ["shop", "foo", "bar"]
    assert args_mod.take_app(alice, argv).name == "shop" and argv == ["foo", "bar"]
    argv = ["shop", "x", "-a", "shop"]
    assert args_mod.take_app(alice, argv).name == "shop" and argv == ["shop", "x"]
    # Several apps: the error lists only what the key may use.
    carol = ctx_for("carol")
    carol.platform.store.apps["news"] = App("news", "carol", "main", None, 1, 0.0)
    carol.platform.store.apps["wiki"] = App("wiki", "carol", "main", None, 1, 0.0)
    with pytest.raises(UserError, match=r"^which app\? name it with --app APP "
                                        r"\(one of: news, wiki\)$"):
        args_mod.take_app(carol, ["foo", "bar"])
