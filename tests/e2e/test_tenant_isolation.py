"""Issue 11, findings 2 and 3 end to end: a tenant's push cannot read another app's image,
forge gitpaas's labels, or fetch from the host through ADD (real git, ssh and Docker)."""

from __future__ import annotations

import pytest

from tests.e2e.test_push import httpd_app
from tests.harness import make_repo

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def victim(server, busybox_image, tmp_path_factory):
    repo = make_repo(tmp_path_factory.mktemp("victim") / "victim",
                     httpd_app(busybox_image, "victim's secret\n"))
    assert server.push(repo, "victim").returncode == 0
    return f"{server.instance}/victim:v1"


def push_dockerfile(server, tmp_path, app: str, dockerfile: str):
    repo = make_repo(tmp_path / app, {"Dockerfile": dockerfile, "index.html": "x\n"})
    return server.push(repo, app)


def test_a_build_cannot_start_from_another_apps_image(server, victim, tmp_path):
    result = push_dockerfile(server, tmp_path, "thief",
                             f"FROM {victim}\nRUN cat /www/index.html\n")
    assert result.returncode != 0
    assert f"FROM {victim} is not allowed" in result.stderr
    assert "victim's secret" not in result.stderr


def test_a_build_cannot_copy_from_another_apps_image(server, victim, busybox_image, tmp_path):
    result = push_dockerfile(server, tmp_path, "copier",
                             f"FROM {busybox_image}\nCOPY --from={victim} /www /stolen\n")
    assert result.returncode != 0 and "is not allowed" in result.stderr


def test_forged_labels_are_refused(server, victim, busybox_image, tmp_path):
    labels = (f"gitpaas.instance={server.instance} gitpaas.app=victim gitpaas.release=1 "
              "gitpaas.process=web gitpaas.replica=1")
    result = push_dockerfile(server, tmp_path, "forger",
                             f"FROM {busybox_image}\nLABEL {labels}\nRUN sleep 5\n")
    assert result.returncode != 0 and "LABEL gitpaas.instance is reserved" in result.stderr
    status, body = server.get(server.host("victim"))
    assert status == 200 and "victim's secret" in body


def test_add_of_a_url_is_refused(server, busybox_image, tmp_path):
    result = push_dockerfile(server, tmp_path, "fetcher",
                             f"FROM {busybox_image}\nADD http://127.0.0.1:6379/ /x\n")
    assert result.returncode != 0 and "ADD of a URL" in result.stderr
