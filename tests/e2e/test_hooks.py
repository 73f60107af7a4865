"""Lifecycle hooks from the operator's hooks directory, and the shipped webhook notifier."""

from __future__ import annotations

import pytest

from tests.e2e.test_push import httpd_app
from tests.harness import commit_files, make_repo, serving

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def server(tmp_path_factory, redis_url, docker_client, clients, webhook):
    root = tmp_path_factory.mktemp("hooks")
    hooks = root / "hooks"
    (hooks / "pre-build").mkdir(parents=True)
    gate = hooks / "pre-build" / "10-gate"
    gate.write_text("#!/bin/sh\nread event\necho \"gate saw $APP release $RELEASE\"\n"
                    "case \"$event\" in *'\"app\": \"blocked\"'*) echo 'blocked by policy'; "
                    "exit 1;; esac\n")
    gate.chmod(0o755)
    (hooks / "post-destroy").mkdir()
    bye = hooks / "post-destroy" / "50-bye"
    bye.write_text("#!/bin/sh\necho \"bye $APP\"\n")
    bye.chmod(0o755)
    url, _ = webhook
    env = {"GITPAAS_HOOKS_DIR": str(hooks), "GITPAAS_WEBHOOK_URL": url}
    with serving(root, redis_url, docker_client, "h", env) as srv:
        yield srv


def test_pre_build_hook_output_streams_and_a_failure_aborts(server, busybox_image, tmp_path):
    repo = make_repo(tmp_path / "ok", httpd_app(busybox_image, "ok\n"))
    ok = server.push(repo, "hooked")
    assert ok.returncode == 0, ok.stderr
    assert "remote:        gate saw hooked release 1" in ok.stderr
    blocked = server.push(repo, "blocked")
    assert blocked.returncode != 0
    assert "(deploy failed: pre-build hook 10-gate failed: blocked by policy)" in blocked.stderr
    status, _ = server.get(server.host("blocked"))
    assert status == 404


def test_webhook_notifier_posts_each_deploy(server, busybox_image, tmp_path, webhook):
    _, received = webhook
    repo = make_repo(tmp_path / "wh", httpd_app(busybox_image, "1\n"))
    assert server.push(repo, "notify").returncode == 0
    commit_files(repo, {"index.html": "2\n"}, "two")
    assert server.push(repo, "notify").returncode == 0
    events = [e for e in received if e["app"] == "notify"]
    assert [(e["event"], e["release"]) for e in events] == [("post-deploy", 1),
                                                          ("post-deploy", 2)]
    assert events[1]["url"].startswith("http://notify.paas.localhost:")
    assert "config" not in events[1]


def test_post_destroy_hook_runs(server, busybox_image, tmp_path):
    repo = make_repo(tmp_path / "gone", httpd_app(busybox_image, "x\n"))
    assert server.push(repo, "gone").returncode == 0
    result = server.ssh("apps:destroy", "gone", "--confirm", "gone")
    assert result.returncode == 0, result.stderr
    assert "bye gone" in result.stdout
