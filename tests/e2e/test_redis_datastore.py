"""redis:create end to end: an app reaches its own Redis by REDIS_URL; another app reaches
neither its address nor its data; the data survives a restart; destroy removes it all."""

from __future__ import annotations

import json
from urllib.parse import urlparse

import pytest

from tests.e2e.test_push import httpd_app
from tests.harness import make_repo

pytestmark = pytest.mark.timeout(600)


def redis_says(server, app: str, host: str, password: str, *commands: str):
    """Commands sent with busybox nc from a one-off container of ``app``."""
    lines = "".join(f"{c}\\r\\n" for c in [f"AUTH {password}", *commands, "QUIT"])
    return server.ssh("run", app, "--", "sh", "-c",
                      f"'printf \"{lines}\" | nc -w 3 {host} 6379'")


def test_an_app_gets_a_redis_of_its_own(server, base_images, busybox_image, tmp_path,
                                        docker_client):
    for app in ("cache", "other"):
        repo = make_repo(tmp_path / app, httpd_app(busybox_image, f"{app}\n"))
        assert server.push(repo, app).returncode == 0
    created = server.ssh("redis:create", "cache")
    assert created.returncode == 0, created.stderr
    url = urlparse(server.ssh("config:get", "cache", "REDIS_URL").stdout.strip())
    assert url.scheme == "redis" and url.port == 6379 and len(url.password) == 32
    said = redis_says(server, "cache", url.hostname, url.password, "SET greeting hi",
                      "GET greeting")
    assert said.returncode == 0 and "+OK" in said.stdout and "hi" in said.stdout, said
    # Its data lives on a volume: a restart keeps it.
    docker_client.containers.get(url.hostname).restart()
    again = redis_says(server, "cache", url.hostname, url.password, "GET greeting")
    assert "hi" in again.stdout, again
    # Another app, even with the URL and password, reaches neither the name nor the address.
    address = json.loads(server.ssh("redis:info", "cache", "--json").stdout)
    assert address["state"] == "running" and address["keys"] == 1
    assert "****" in address["url"]
    ip = next(iter(docker_client.containers.get(url.hostname).attrs["NetworkSettings"]
                   ["Networks"].values()))["IPAddress"]
    for host in (url.hostname, ip):
        probe = redis_says(server, "other", host, url.password, "GET greeting")
        assert "hi" not in probe.stdout, (host, probe)
    # Only the owner or an admin destroys it; then container, volume and REDIS_URL go.
    gone = server.ssh("redis:destroy", "cache", "--confirm", "cache")
    assert gone.returncode == 0, gone.stderr
    assert server.ssh("config:get", "cache", "REDIS_URL").returncode != 0
    assert not docker_client.containers.list(all=True, filters={"name": url.hostname})
    assert not [v for v in docker_client.volumes.list() if v.name == url.hostname]


def test_apps_destroy_removes_the_redis(server, base_images, busybox_image, tmp_path,
                                        docker_client):
    assert server.ssh("apps:create", "shortlived").returncode == 0
    assert server.ssh("redis:create", "shortlived", "--no-restart").returncode == 0
    name = f"{server.instance}-redis-shortlived"
    assert docker_client.containers.get(name).status == "running"
    assert server.ssh("apps:destroy", "shortlived", "--confirm", "shortlived").returncode == 0
    assert not docker_client.containers.list(all=True, filters={"name": name})
