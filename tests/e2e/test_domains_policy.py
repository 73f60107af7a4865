"""Who may claim which host names (no app-created catch-alls or squatting)."""

from __future__ import annotations

import socket


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


SERVER_NAMES = ("localhost", "LOCALHOST.", "db.localhost", "127.0.0.1", "0x7f.1",
                "2130706433", "0177.0.0.1", "127.1", "10.0.0.1", "[::1]", "::1",
                "0x7f000001")


def test_the_servers_own_names_are_for_admins(server):
    """Issue 11, finding 7: traffic addressed to the server by IP or as localhost."""
    mal = server.add_key("mal-names")
    assert server.ssh("apps:create", "malsite", key=mal).returncode == 0
    for host in SERVER_NAMES:
        refused = server.ssh("domains:add", "malsite", host, key=mal)
        assert refused.returncode == 1, host
        lines = [x for x in refused.stderr.splitlines() if not x.startswith("-----> Waiting")]
        assert len(lines) == 1 and lines[0].startswith(" !     "), refused.stderr
        assert "only admins may add" in refused.stderr or "invalid host name" in \
            refused.stderr, (host, refused.stderr)
    for host in ("127.0.0.1", "0x7f.1", "localhost"):
        refused = server.ssh("domains:add", "malsite", host, key=mal)
        assert "only admins may add" in refused.stderr, (host, refused.stderr)
    hostname = socket.gethostname().lower()
    if "." not in hostname or hostname.rsplit(".", 1)[1].isalpha():
        refused = server.ssh("domains:add", "malsite", hostname, key=mal)
        assert refused.returncode == 1 and "server's own names" in refused.stderr
    assert server.ssh("apps:create", "adminsite").returncode == 0
    assert server.ssh("domains:add", "adminsite", "127.0.0.1").returncode == 0
    assert server.ssh("domains:remove", "adminsite", "127.0.0.1").returncode == 0


def test_a_tenant_cannot_take_a_parent_or_child_of_another_apps_domain(server):
    """Issue 11, finding 7: a tenant took victim-corp.com while the admin's app held
    www.victim-corp.com."""
    mal = server.add_key("mal-kin")
    assert server.ssh("apps:create", "victimcorp").returncode == 0
    assert server.ssh("domains:add", "victimcorp", "www.victim-corp.com").returncode == 0
    assert server.ssh("apps:create", "malkin", key=mal).returncode == 0
    for host in ("victim-corp.com", "a.www.victim-corp.com", "x.y.www.victim-corp.com"):
        refused = server.ssh("domains:add", "malkin", host, key=mal)
        assert refused.returncode == 1, host
        assert "too close to another app's domain" in refused.stderr, refused.stderr
    # Siblings and unrelated names are fine; the owner of both may relate them.
    assert server.ssh("domains:add", "malkin", "shop.victim-corp.org", key=mal).returncode == 0
    assert server.ssh("domains:add", "malkin", "mal-corp.com", key=mal).returncode == 0
    assert server.ssh("apps:create", "malkin2", key=mal).returncode == 0
    ok = server.ssh("domains:add", "malkin2", "www.mal-corp.com", key=mal)
    assert ok.returncode == 0, ok.stderr
    assert server.ssh("domains:add", "victimcorp", "victim-corp.com").returncode == 0
