"""Issue 13: one rule for the app of a command, through the real ssh client."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.timeout(300)


def test_app_omitted_with_arguments_that_look_like_app_names(server):
    solo = server.add_key("solo")
    assert server.ssh("apps:create", "soloapp", key=solo).returncode == 0
    assert server.ssh("config:set", "foo=1", "bar=2", "keep=3", key=solo).returncode == 0
    unset = server.ssh("config:unset", "foo", "bar", key=solo)
    assert unset.returncode == 0, unset.stderr
    config = server.ssh("config", "soloapp", key=solo)
    assert "keep" in config.stdout and "foo" not in config.stdout, config.stdout
    branch = server.ssh("git:set", "deploy-branch", "release/*", key=solo)
    assert branch.returncode == 0, branch.stderr
    assert "release/*" in server.ssh("apps:info", "soloapp", key=solo).stdout
    # With a second app, the key must say which, and hears only of its own apps.
    assert server.ssh("apps:create", "soloother", key=solo).returncode == 0
    which = server.ssh("config:unset", "foo", key=solo)
    assert which.returncode != 0
    assert which.stderr.rstrip("\n") == (" !     which app? name it with --app APP"
                                    " (one of: soloapp, soloother)"), which.stderr
