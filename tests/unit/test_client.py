"""The ``paas`` client: remote URLs, quoting, the ssh argument list."""

from __future__ import annotations

import shlex

import pytest

from gitpaas.client import ClientError, Remote, build_argv, parse_remote_url, remote_command


@pytest.mark.parametrize(("url", "expected"), [
    ("ssh://git@paas.example.com:2222/shop.git", Remote("git", "paas.example.com", 2222, "shop")),
    ("ssh://git@127.0.0.1:40000/shop", Remote("git", "127.0.0.1", 40000, "shop")),
    ("ssh://paas.example.com/shop.git", Remote("git", "paas.example.com", 22, "shop")),
    ("git@paas.example.com:shop.git", Remote("git", "paas.example.com", 22, "shop")),
    ("deploy@[::1]:shop.git", Remote("deploy", "::1", 22, "shop")),
    ("ssh://git@[::1]:2222/shop.git", Remote("git", "::1", 2222, "shop")),
])
def test_parse_remote_url(url, expected):
    assert parse_remote_url(url) == expected


@pytest.mark.parametrize("url", ["https://example.com/shop.git", "/srv/shop.git",
                                 "ssh://git@host:2222/", "git@host:a/b.git"])
def test_parse_remote_url_refuses(url):
    with pytest.raises(ClientError):
        parse_remote_url(url)


def test_remote_command_quotes_every_argument():
    cmd = remote_command("config:set", "shop", ["A=x y", "B=$HOME;rm -rf /", "C='q'"])
    assert shlex.split(cmd) == ["config:set", "--app", "shop", "A=x y", "B=$HOME;rm -rf /",
                                "C='q'"]
    assert remote_command("apps", "shop", []) == "apps"
    assert shlex.split(remote_command("ps", "shop", ["-a", "blog"])) == ["ps", "-a", "blog"]


def test_build_argv_uses_remote_and_ssh_env():
    urls = {"paas": "ssh://git@127.0.0.1:4022/shop.git", "prod": "git@prod.example:web.git"}
    argv = build_argv(["config:get", "FOO"], {"PAAS_SSH": "ssh -i '/k ey'"}, urls.__getitem__)
    assert argv == ["ssh", "-i", "/k ey", "-p", "4022", "git@127.0.0.1",
                    "config:get --app shop FOO"]
    argv = build_argv(["--remote", "prod", "ps"], {"GIT_SSH_COMMAND": "ssh -v"},
                      urls.__getitem__)
    assert argv == ["ssh", "-v", "-p", "22", "git@prod.example", "ps --app web"]
    assert build_argv(["--app", "other", "ps"], {}, urls.__getitem__)[-1] == "ps --app other"


def test_run_and_enter_get_a_pty_and_the_app_before_the_separator():
    urls = {"paas": "ssh://git@127.0.0.1:4022/shop.git"}
    argv = build_argv(["run", "--tty", "--", "grep", "-a", "x"], {}, urls.__getitem__)
    assert argv[:2] == ["ssh", "-t"]
    assert shlex.split(argv[-1]) == ["run", "--app", "shop", "--tty", "--", "grep", "-a", "x"]
    assert "-t" not in build_argv(["run", "--", "ls", "-t"], {}, urls.__getitem__)[:-1]
    assert build_argv(["enter", "web.1"], {}, urls.__getitem__)[1] == "-t"
