"""Pure parts of the command surface: arguments, encoded values, scale counts, versions."""

from __future__ import annotations

import base64
from types import SimpleNamespace

import pytest

from gitpaas.commands import load_all
from gitpaas.commands.config import decode_value, encode_value, parse_assignments
from gitpaas.commands.ps import parse_scale, uptime
from gitpaas.commands.registry import COMMANDS
from gitpaas.commands.releases import parse_version, previous_release
from gitpaas.commands.spec import parse
from gitpaas.errors import InvalidInput, NotFound, UserError
from gitpaas.store import App, Key, Release


def spec(name):
    load_all()
    return COMMANDS[name].spec


def test_option_forms():
    parsed = parse(spec("releases"), ["--app", "shop", "-n", "5", "--num=7", "--json"],
                   *platform_and_key("alice"))
    assert parsed.the_app.name == "shop" and parsed.option("-n") == "7"
    assert parsed.flag("--json")
    with pytest.raises(InvalidInput, match=r"^--app needs a value \(usage: releases"):
        parse(spec("releases"), ["--app"], *platform_and_key("alice"))


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


def platform_and_key(key_name: str, admin: bool = False):
    apps = [App("shop", "alice", "main", None, 1, 0.0), App("blog", "bob", "main", None, 1, 0.0)]
    return FakePlatform(FakeStore(apps, {})), Key(key_name, "", "", admin, 0.0)


def ctx_for(key_name: str, admin: bool = False):
    platform, key = platform_and_key(key_name, admin)
    return SimpleNamespace(platform=platform, key=key)


def take(ctx, command, argv):
    """(the app, the arguments) of ``command argv`` as the parser shares them."""
    parsed = parse(spec(command), argv, ctx.platform, ctx.key)
    return parsed.app.name, [v for values in parsed.values.values() for v in values]


def test_app_positional_explicit_and_implicit():
    alice = ctx_for("alice")
    assert take(alice, "config:unset", ["FOO"]) == ("shop", ["FOO"])
    assert take(alice, "config:get", ["shop", "FOO"]) == ("shop", ["FOO"])
    assert take(alice, "config:unset", ["FOO", "-a", "shop"]) == ("shop", ["FOO"])
    # a stranger learns nothing more than from a missing app
    for command, argv in (("ps", ["blog"]), ("config:get", ["blog", "FOO"]),
                          ("config:set", ["blog", "A=1"]), ("rollback", ["blog"]),
                          ("git:set", ["blog", "deploy-branch", "x"])):
        with pytest.raises(NotFound, match="no app named 'blog', or you may not use it"):
            take(alice, command, argv)
    admin = ctx_for("root", admin=True)
    with pytest.raises(UserError, match="which app"):
        take(admin, "ps", [])


def test_one_rule_for_the_app():
    """Issue 13: --app wins; else a first positional naming a usable app; else the key's
    only app with every positional an argument; else a one-line error."""
    alice = ctx_for("alice")
    # config:unset foo bar, git:set deploy-branch 'release/*' (APP omitted)
    assert take(alice, "config:unset", ["foo", "bar"]) == ("shop", ["foo", "bar"])
    assert take(alice, "config:unset", ["blog", "FOO"]) == ("shop", ["blog", "FOO"])
    assert take(alice, "git:set", ["deploy-branch", "release/*"]) == (
        "shop", ["deploy-branch", "release/*"])
    assert take(alice, "config:unset", ["shop", "foo", "bar"]) == ("shop", ["foo", "bar"])
    assert take(alice, "config:unset", ["shop", "x", "-a", "shop"]) == ("shop", ["shop", "x"])
    # An argument that looks like the first one is never the app (rollback v3, A=1).
    assert take(alice, "rollback", ["v1"]) == ("shop", ["v1"])
    assert take(alice, "config:set", ["A=1", "B=2"]) == ("shop", ["A=1", "B=2"])
    assert take(alice, "enter", ["web.1"]) == ("shop", ["web.1"])
    # Several apps: the error lists only what the key may use.
    carol = ctx_for("carol")
    carol.platform.store.apps["news"] = App("news", "carol", "main", None, 1, 0.0)
    carol.platform.store.apps["wiki"] = App("wiki", "carol", "main", None, 1, 0.0)
    with pytest.raises(UserError, match=r"^which app\? name it with --app APP "
                                        r"\(one of: news, wiki\)$"):
        take(carol, "config:unset", ["foo", "bar"])


@pytest.mark.parametrize(("command", "argv", "message"), [
    ("config:get", ["shop"], "missing KEY (usage: config:get [APP] KEY [--encoded])"),
    ("ps", ["shop", "x"], "unexpected argument 'x' (usage: ps [APP] [--json])"),
    ("ps", ["--bogus"], "unknown option '--bogus' (usage: ps [APP] [--json])"),
    ("ps", ["--json=1"], "--json takes no value (usage: ps [APP] [--json])"),
    ("git:set", ["shop", "branch", "x"], "expected deploy-branch, got 'branch'"),
    ("git:set", ["shop", "deploy-branch"], "missing PATTERN (usage: git:set [APP]"),
    ("config:set", ["shop", "A=1", "B"], "expected KEY=VALUE, got 'B'"),
    ("apps:destroy", ["shop", "--confirm"], "--confirm needs a value (usage: apps:destroy"),
    ("run", ["shop"], "give the command after --: COMMAND [ARGS...] (usage: run [APP]"),
    ("certs:add", ["shop", "a.crt"], "unexpected argument 'a.crt' (usage: certs:add"),
    ("apps:create", [], "missing APP (usage: apps:create APP)"),
])
def test_a_bad_line_is_one_line_with_the_usage(command, argv, message):
    with pytest.raises(InvalidInput) as caught:
        parse(spec(command), argv, *platform_and_key("alice"))
    assert caught.value.message.startswith(message) and "\n" not in caught.value.message


def test_usage_lines_come_from_the_declarations():
    assert spec("logs").usage() == "logs [APP] [-n N] [-p PROCESS] [-t|--tail]"
    assert spec("certs:add").usage() == (
        "certs:add [APP] [CRT KEY]   (over ssh: cat CRT KEY | ssh paas certs:add APP)")
    assert spec("enter").usage() == "enter [APP] [PROCESS.N] [-- COMMAND [ARGS...]]"
    # hidden aliases are accepted
    parsed = parse(spec("logs"), ["--tail", "--num", "3", "--ps", "web"],
                   *platform_and_key("alice"))
    assert parsed.flag("-t") and parsed.option("-n") == "3" and parsed.option("-p") == "web"


def test_rest_and_a_lone_dash():
    parsed = parse(spec("run"), ["-t", "--", "ls", "-la", "--", "x"], *platform_and_key("alice"))
    assert parsed.command == ["ls", "-la", "--", "x"] and parsed.flag("--tty")
    parsed = parse(spec("keys:add"), ["ci", "-", "--deploy-only", "shop"])
    assert parsed.arg("FILE|-") == "-" and parsed.option("--deploy-only") == "shop"
    assert parse(spec("certs:add"), ["shop", "a", "b"], *platform_and_key("alice")).many(
        "CRT KEY") == ["a", "b"]


def test_no_command_writes_a_usage_by_hand():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "gitpaas" / "commands"
    for path in root.glob("*.py"):
        assert '"usage: ' not in path.read_text(), path.name
