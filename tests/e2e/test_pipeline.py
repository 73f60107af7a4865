"""The release pipeline end to end: buildpacks, release phase, deploy branches, the queue."""

from __future__ import annotations

import json
import threading

import pytest

from gitpaas.build import buildpacks
from tests.e2e.test_push import httpd_app
from tests.harness import commit_files, git, make_repo, wait_for
from tests.samples import EXPECTED, sample_app

pytestmark = pytest.mark.timeout(900)


@pytest.mark.parametrize("name", buildpacks.BUILDPACKS)
def test_each_buildpack_sample_is_served_through_the_router(server, base_images, tmp_path,
                                                           name):
    app = f"bp-{name}"
    repo = make_repo(tmp_path / app, sample_app(name))
    result = server.push(repo, app)
    assert result.returncode == 0, result.stderr
    assert f"-----> Buildpack: {name} (found " in result.stderr
    status, body = server.get(server.host(app))
    assert status == 200 and EXPECTED[name] in body


def test_release_phase_runs_first_and_its_failure_rejects_the_push(server, busybox_image,
                                                                   tmp_path, docker_client):
    files = httpd_app(busybox_image, "one\n")
    files["Procfile"] = ("release: echo migrating the database\n"
                         "web: httpd -f -p $PORT -h /www\n")
    repo = make_repo(tmp_path / "rel", files)
    ok = server.push(repo, "rel")
    assert ok.returncode == 0, ok.stderr
    assert "remote:        migrating the database" in ok.stderr
    assert ok.stderr.index("migrating the database") < ok.stderr.index("Checking web.1")
    commit_files(repo, {"index.html": "two\n",
                        "Procfile": "release: echo bad migration; exit 4\n"
                                    "web: httpd -f -p $PORT -h /www\n"}, "bad release")
    bad = server.push(repo, "rel")
    assert bad.returncode != 0
    assert "(deploy failed: release phase failed (exit 4))" in bad.stderr
    assert server.get(server.host("rel")) == (200, "one\n")
    left = docker_client.containers.list(
        all=True, filters={"label": [f"gitpaas.instance={server.instance}", "gitpaas.app=rel"]})
    assert [c.name for c in left] == [f"{server.instance}.rel.v1.web.1"]


def test_deploy_branch_pattern_deploys_release_branches_only(server, busybox_image, tmp_path):
    repo = make_repo(tmp_path / "ci", httpd_app(busybox_image, "first\n"))
    assert server.push(repo, "ci").returncode == 0
    setting = server.ssh("git:set", "ci", "deploy-branch", "release/*")
    assert setting.returncode == 0, setting.stderr
    commit_files(repo, {"index.html": "release\n"}, "r1")
    released = server.push(repo, "ci", "HEAD:refs/heads/release/2026-11-27")
    assert released.returncode == 0, released.stderr
    assert "is live" in released.stderr
    assert server.get(server.host("ci")) == (200, "release\n")
    commit_files(repo, {"index.html": "feature\n"}, "f1")
    feature = server.push(repo, "ci", "HEAD:refs/heads/feature/x")
    assert feature.returncode == 0 and "not deployed" in feature.stderr
    assert server.get(server.host("ci")) == (200, "release\n")
    bad = server.ssh("git:set", "ci", "deploy-branch", "../x")
    assert bad.returncode == 1 and "invalid branch" in bad.stderr


def test_two_concurrent_pushes_to_one_app_land_in_order(server, busybox_image, tmp_path):
    slow = httpd_app(busybox_image, "A\n")
    slow["Dockerfile"] += "RUN sleep 3\n"
    repo = make_repo(tmp_path / "q", slow)
    results: dict[str, object] = {}

    def push_a():
        results["a"] = server.push(repo, "q")

    first = threading.Thread(target=push_a)
    first.start()
    lock = server.data_dir / "locks" / "q.lock"  # A's push holds the app's lock
    wait_for(lambda: lock.exists() and "push by admin" in lock.read_text(), 60,
             "the first push to take the app's lock")
    second_dir = tmp_path / "q2"
    git(tmp_path, "clone", "-q", str(repo), str(second_dir))
    commit_files(second_dir, {"index.html": "B\n"}, "B on top of A")
    results["b"] = server.push(second_dir, "q")
    first.join()
    assert results["a"].returncode == 0, results["a"].stderr
    assert results["b"].returncode == 0, results["b"].stderr
    assert "Waiting for q: push by admin" in results["b"].stderr
    assert server.get(server.host("q")) == (200, "B\n")
    releases = server.gitpaas("releases", "q", "--json")
    assert releases.returncode == 0, releases.stderr
    # A deployed first, then B on top of it
    shas = [git(d, "rev-parse", "--short=7", "HEAD").stdout.strip() for d in (repo, second_dir)]
    assert [(r["version"], r["description"]) for r in json.loads(releases.stdout)] == [
        (2, f"Deploy {shas[1]}"), (1, f"Deploy {shas[0]}")]
