"""Deploy keys for CI: a key that may push one app and read its releases and logs, nothing
else; driven by the real git and OpenSSH clients."""

from __future__ import annotations

import pytest

from tests.e2e.test_push import httpd_app
from tests.harness import commit_files, make_key, make_repo

pytestmark = pytest.mark.timeout(600)
REFUSED = "a deploy key may only push to ci"


@pytest.fixture(scope="module")
def keys(server, tmp_path_factory):
    owner = server.add_key("ciowner")
    other = server.add_key("stranger")
    assert server.ssh("apps:create", "ci", key=owner).returncode == 0
    assert server.ssh("apps:create", "otherapp", key=other).returncode == 0
    deploy = make_key(tmp_path_factory.mktemp("deploykey"), "pipeline")
    added = server.ssh("keys:add", "pipeline", "--deploy-only", "ci", key=owner,
                       input=deploy.with_suffix(".pub").read_text())
    assert added.returncode == 0, added.stderr
    assert "as a deploy key of ci" in added.stdout
    return {"owner": owner, "other": other, "deploy": deploy}


def test_deploy_key_pushes_and_reads_releases_and_logs(server, keys, busybox_image, tmp_path):
    repo = make_repo(tmp_path / "ci", httpd_app(busybox_image, "from ci\n"))
    pushed = server.push(repo, "ci", "main", keys["deploy"])
    assert pushed.returncode == 0, pushed.stderr
    assert server.get(server.host("ci")) == (200, "from ci\n")
    releases = server.ssh("releases", "ci", key=keys["deploy"])
    assert releases.returncode == 0 and "v1" in releases.stdout, releases.stderr
    assert server.ssh("logs", "ci", "-n", "5", key=keys["deploy"]).returncode == 0
    # A failed deploy makes git push fail (what CI relies on).
    commit_files(repo, {"Dockerfile": "FROM nosuch-image-at-all\n"}, "broken")
    broken = server.push(repo, "ci", "main", keys["deploy"])
    assert broken.returncode != 0 and "deploy failed" in broken.stderr


@pytest.mark.parametrize("argv", [
    ["config", "ci"], ["config:get", "ci", "X"], ["config:set", "ci", "X=1"],
    ["ps:scale", "ci", "web=2"], ["apps:destroy", "ci", "--confirm", "ci"],
    ["domains:add", "ci", "ci.example.com"], ["sharing", "ci"], ["apps"],
    ["apps:create", "newone"], ["keys:add", "more", "--deploy-only", "ci"],
])
def test_deploy_key_is_refused_everything_else(server, keys, argv):
    result = server.ssh(*argv, key=keys["deploy"], input="")
    assert result.returncode != 0
    assert REFUSED in result.stderr, result.stderr


def test_deploy_key_reaches_no_other_app(server, keys, busybox_image, tmp_path):
    repo = make_repo(tmp_path / "other", httpd_app(busybox_image, "nope\n"))
    for app in ("otherapp", "brandnew"):
        pushed = server.push(repo, app, "main", keys["deploy"])
        assert pushed.returncode != 0
        assert f"no app named '{app}', or you may not use it" in pushed.stderr
    assert server.ssh("releases", "otherapp", key=keys["deploy"]).returncode != 0
    assert "brandnew" not in server.ssh("apps").stdout


def test_sharing_lists_and_owner_manages_deploy_keys(server, keys):
    listed = server.ssh("sharing", "ci", key=keys["owner"])
    assert "pipeline  (deploy key" in listed.stdout, listed.stderr
    # A stranger can neither add a deploy key to the app nor remove the app's one.
    stranger = server.ssh("keys:add", "evil", "--deploy-only", "ci", key=keys["other"],
                          input=keys["other"].with_suffix(".pub").read_text())
    assert stranger.returncode != 0 and "no app named 'ci'" in stranger.stderr
    assert server.ssh("keys:remove", "pipeline", key=keys["other"]).returncode != 0
    # A deploy key cannot be shared onto another app.
    shared = server.ssh("sharing:add", "otherapp", "pipeline", key=keys["other"])
    assert shared.returncode != 0 and "is a deploy key" in shared.stderr


def test_destroying_the_app_removes_its_deploy_keys(server, keys, tmp_path):
    deploy = make_key(tmp_path, "gone")
    assert server.ssh("apps:create", "ephemeral", key=keys["owner"]).returncode == 0
    assert server.ssh("keys:add", "gone", "--deploy-only", "ephemeral", key=keys["owner"],
                      input=deploy.with_suffix(".pub").read_text()).returncode == 0
    assert server.ssh("releases", "ephemeral", key=deploy).returncode == 0
    assert server.ssh("apps:destroy", "ephemeral", "--confirm", "ephemeral",
                      key=keys["owner"]).returncode == 0
    # A new app of the same name, by someone else, is not reachable with the old key.
    assert server.ssh("apps:create", "ephemeral", key=keys["other"]).returncode == 0
    after = server.ssh("releases", "ephemeral", key=deploy)
    assert after.returncode != 0
    assert "gone" not in server.ssh("keys").stdout.split()
