"""Procfile processes, scaling, health checks from app.json and rollback with config."""

from __future__ import annotations

import json

import pytest

from tests.e2e.test_push import httpd_app
from tests.harness import commit_files, git, make_repo, wait_for

pytestmark = pytest.mark.timeout(900)


def containers(docker_client, instance: str, app: str) -> list[str]:
    label = [f"gitpaas.instance={instance}", f"gitpaas.app={app}"]
    # Summaries, not inspects: a container retired between the listing and its inspection
    # would raise NotFound.
    return sorted(c["Names"][0].lstrip("/")
                  for c in docker_client.api.containers(filters={"label": label}))


def test_procfile_web_x2_and_a_worker(server, busybox_image, tmp_path, docker_client, redis_url):
    files = httpd_app(busybox_image, "procs\n")
    files["Procfile"] = "web: httpd -f -p $PORT -h /www\nworker: while true; do sleep 1; done\n"
    repo = make_repo(tmp_path / "procs", files)
    assert server.push(repo, "procs").returncode == 0
    scaled = server.ssh("ps:scale", "procs", "web=2", "worker=1")
    assert scaled.returncode == 0, scaled.stderr
    i = server.instance
    assert wait_for(lambda: containers(docker_client, i, "procs") == [
        f"{i}.procs.v2.web.1", f"{i}.procs.v2.web.2", f"{i}.procs.v2.worker.1"])
    routes = json.loads(server.ssh("routes", "procs", "--json").stdout)
    backends = routes[f"{i}:frontend:procs.paas.localhost"][1:]
    assert len(backends) == 2
    # The next push keeps the formation.
    commit_files(repo, {"index.html": "procs again\n"}, "v3")
    assert server.push(repo, "procs").returncode == 0
    assert wait_for(lambda: containers(docker_client, i, "procs") == [
        f"{i}.procs.v3.web.1", f"{i}.procs.v3.web.2", f"{i}.procs.v3.worker.1"])
    bodies = {server.get(server.host("procs"))[1] for _ in range(10)}
    assert bodies == {"procs again\n"}
    worker = docker_client.containers.get(f"{i}.procs.v3.worker.1")
    env = dict(e.split("=", 1) for e in worker.attrs["Config"]["Env"])
    assert env["DYNO"] == "worker.1" and worker.attrs["HostConfig"]["PortBindings"] in ({}, None)


def test_crashing_worker_fails_the_deploy(server, busybox_image, tmp_path):
    files = httpd_app(busybox_image, "w\n")
    repo = make_repo(tmp_path / "wk", files)
    assert server.push(repo, "wk").returncode == 0
    assert server.ssh("ps:scale", "wk", "worker=1").returncode != 0  # no worker type yet
    commit_files(repo, {"Procfile": "web: httpd -f -p $PORT -h /www\nworker: exit 1\n"}, "w")
    # web only by default; scaling the crashing worker must fail and keep v1/v2 serving.
    assert server.push(repo, "wk").returncode == 0
    scaled = server.ssh("ps:scale", "wk", "worker=1")
    assert scaled.returncode != 0 and "worker.1" in scaled.stderr
    assert server.get(server.host("wk")) == (200, "w\n")


def test_app_json_health_check_path_and_content(server, busybox_image, tmp_path):
    files = httpd_app(busybox_image, "home\n")
    files["health"] = "ok\n"
    files["Dockerfile"] = files["Dockerfile"].replace(
        "COPY index.html /www/index.html", "COPY index.html health /www/")
    files["app.json"] = json.dumps({"healthchecks": {"web": [
        {"type": "startup", "path": "/health", "content": "ok", "attempts": 20,
         "wait": 0.2, "timeout": 2}]}})
    repo = make_repo(tmp_path / "hj", files)
    first = server.push(repo, "hj")
    assert first.returncode == 0, first.stderr
    commit_files(repo, {"health": "degraded\n"}, "unhealthy")
    second = server.push(repo, "hj")
    assert second.returncode != 0
    assert "health check of web.1: GET /health did not contain 'ok' (after 20 attempts)" \
        in second.stderr
    assert server.get(server.host("hj")) == (200, "home\n")
    # Issue 13: a declared check needs 200-399; a 404 (the page is gone) fails the deploy,
    # though the default check would take it (below 500).
    git(repo, "rm", "-q", "health")
    files_404 = {"Dockerfile": files["Dockerfile"].replace("COPY index.html health /www/",
                                                           "COPY index.html /www/"),
                 "app.json": json.dumps({"healthchecks": {"web": [
                     {"type": "startup", "path": "/health", "attempts": 3, "wait": 0.2,
                      "timeout": 2}]}})}
    commit_files(repo, files_404, "no health page")
    third = server.push(repo, "hj")
    assert third.returncode != 0
    assert "health check of web.1: GET /health returned 404 (after 3 attempts)" \
        in third.stderr, third.stderr[-2000:]
    assert server.get(server.host("hj")) == (200, "home\n")


def test_rollback_brings_back_image_and_config(server, busybox_image, tmp_path):
    files = httpd_app(busybox_image, "")
    files["Procfile"] = "web: echo \"$GREETING\" > /www/index.html && httpd -f -p $PORT -h /www\n"
    repo = make_repo(tmp_path / "rb", files)
    assert server.push(repo, "rb").returncode == 0
    assert server.ssh("config:set", "rb", "GREETING=one").returncode == 0
    assert server.get(server.host("rb")) == (200, "one\n")
    commit_files(repo, {"Procfile": files["Procfile"].replace("$GREETING", "v3 $GREETING")},
                 "v3")
    assert server.push(repo, "rb").returncode == 0
    assert server.ssh("config:set", "rb", "GREETING=two").returncode == 0
    assert server.get(server.host("rb")) == (200, "v3 two\n")
    back = server.ssh("rollback", "rb", "v2")
    assert back.returncode == 0, back.stderr
    assert server.get(server.host("rb")) == (200, "one\n")
    config = server.ssh("config:get", "rb", "GREETING")
    assert config.stdout.strip() == "one"
    releases = json.loads(server.ssh("releases", "rb", "--json").stdout)
    assert releases[0]["description"] == "Rollback to v2"


def test_predeploy_changes_are_baked_in_but_config_and_command_are_not(
        server, busybox_image, tmp_path, docker_client):
    assert server.ssh("apps:create", "pre").returncode == 0
    assert server.ssh("config:set", "pre", "CANARY=pre-secret-91").returncode == 0
    files = httpd_app(busybox_image, "home\n")
    files["app.json"] = json.dumps(
        {"scripts": {"dokku": {"predeploy": "echo baked-$CANARY > /www/baked.txt"}}})
    repo = make_repo(tmp_path / "pre", files)
    pushed = server.push(repo, "pre")
    assert pushed.returncode == 0, pushed.stderr
    assert server.get(server.host("pre"), "/baked.txt") == (200, "baked-pre-secret-91\n")
    image = docker_client.images.get(f"{server.instance}/pre:v1")
    config = image.attrs["Config"]
    assert not any("pre-secret-91" in e for e in config.get("Env") or [])
    assert config["Cmd"] == ["/bin/httpd", "-f", "-p", "5000", "-h", "/www"]
    assert not config.get("Volumes")
    probe = docker_client.containers.run(
        image.id, ["sh", "-c", "test -e /.gitpaas-env && echo left || echo clean"],
        remove=True)
    assert probe.strip() == b"clean"
