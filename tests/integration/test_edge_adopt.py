"""Adopting a running edge (what ``gitpaas serve`` does at start): what it renders reaches
the running nginx. Against a real nginx."""

from __future__ import annotations

import dataclasses

from gitpaas.edge import Edge
from tests.integration.routerkit import (
    backends,
    free_port,
    get,
    make_config,
    running_router,
    set_route,
)

HOST = "adopt.example.com"


def test_adopt_rewrites_conf_lua(redis_url, instance):
    """conf.lua (the Lua's settings: the HTTPS port of redirects here) follows the
    settings like nginx.conf does (it was written once and never replaced)."""
    config = make_config(redis_url, instance, https_redirect=True,
                         https_listen=("127.0.0.1", free_port()))
    with backends("a") as (a,), running_router(config) as router:
        set_route(redis_url, instance, HOST, a.url)
        status, headers, _ = get(router.port, HOST, "/x")
        assert (status, headers["Location"]) == (301, f"https://{HOST}:{router.tls_port}/x")
        moved = dataclasses.replace(config, https_listen=("127.0.0.1", free_port()))
        assert Edge(moved).start() == router.edge.pid()
        assert f"https_port = {moved.https_listen[1]}," in moved.lua_conf_path.read_text()  # type: ignore[index]
        assert moved.lua_conf_path.stat().st_mode & 0o777 == 0o600
        status, headers, _ = get(router.port, HOST, "/x")
        assert headers["Location"] == f"https://{HOST}:{moved.https_listen[1]}/x"  # type: ignore[index]
