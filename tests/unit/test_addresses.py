"""Issue 19.5: every address printed comes from the settings."""

from __future__ import annotations

import pytest

from gitpaas import addresses
from gitpaas.errors import InvalidInput
from gitpaas.settings import load


def settings(**values):
    return load(values, environ={})


def test_defaults_come_from_the_listen_settings():
    s = settings(ssh_listen="0.0.0.0:2022", http_listen="0.0.0.0:8081", domain="p.example")
    assert addresses.git_remote(s, "shop") == "ssh://git@p.example:2022/shop.git"
    assert addresses.ssh_command(s) == "ssh -p 2022 git@p.example"
    assert addresses.app_url(s, "shop") == "http://shop.p.example:8081/"


def test_public_settings_win_and_default_ports_are_left_out():
    s = settings(ssh_listen="0.0.0.0:2022", http_listen="0.0.0.0:8081", domain="p.example",
                 ssh_public_host="git.example.org", ssh_public_port=22,
                 public_scheme="https", public_port=443)
    assert addresses.git_remote(s, "shop") == "ssh://git@git.example.org/shop.git"
    assert addresses.ssh_command(s) == "ssh git@git.example.org"
    assert addresses.app_url(s, "shop") == "https://shop.p.example/"


def test_https_port_defaults_to_the_https_listener():
    s = settings(domain="p.example", public_scheme="https", router_https_listen="0.0.0.0:8443")
    assert addresses.app_url(s, "shop") == "https://shop.p.example:8443/"


def test_a_bad_scheme_is_refused():
    with pytest.raises(InvalidInput, match="public_scheme"):
        settings(public_scheme="gopher")
