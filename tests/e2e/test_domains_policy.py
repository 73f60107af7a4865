"""Who may claim which host names (no app-created catch-alls or squatting)."""

from __future__ import annotations


def test_wildcards_and_platform_names_are_for_admins(server):
    bob = server.add_key("bob-domains")
    assert server.ssh("apps:create", "bobsite", key=bob).returncode == 0
    for host in ("*.paas.localhost", "*.example.com", "future.paas.localhost",
                 "paas.localhost"):
        refused = server.ssh("domains:add", "bobsite", host, key=bob)
        assert refused.returncode == 1, host
        assert "only admins may add" in refused.stderr
    too_wide = server.ssh("domains:add", "bobsite", "*.com")
    assert too_wide.returncode == 1 and "too wide" in too_wide.stderr
    ok = server.ssh("domains:add", "bobsite", "www.bob.example", key=bob)
    assert ok.returncode == 0, ok.stderr


def test_an_app_cannot_be_created_under_another_apps_domain(server):
    assert server.ssh("apps:create", "holder").returncode == 0
    assert server.ssh("domains:add", "holder", "later.paas.localhost").returncode == 0
    taken = server.ssh("apps:create", "later")
    assert taken.returncode == 1
    assert "later.paas.localhost is taken by another app's domain" in taken.stderr
