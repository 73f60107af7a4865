"""The walking skeleton, end to end: git push over OpenSSH to a live app behind the router."""

from __future__ import annotations

import pytest

from tests.harness import commit_files, make_repo, wait_for

pytestmark = pytest.mark.timeout(600)


def httpd_app(image: str, text: str) -> dict[str, str]:
    return {
        "Dockerfile": f"FROM {image}\nCOPY index.html /www/index.html\n"
                      'CMD ["/bin/httpd", "-f", "-p", "5000", "-h", "/www"]\n',
        "index.html": text,
    }


def test_push_deploy_update_and_failed_push_keeps_old_release(server, busybox_image, tmp_path,
                                                              docker_client):
    repo = make_repo(tmp_path / "shop", httpd_app(busybox_image, "hello v1\n"))
    first = server.push(repo, "shop")
    assert first.returncode == 0, first.stderr
    # The build streamed back as remote: lines.
    assert "remote: -----> Building shop (v1)" in first.stderr
    assert "remote: -----> shop v1 is live" in first.stderr
    assert server.get(server.host("shop")) == (200, "hello v1\n")
    # Unknown hosts get a 404 naming no app.
    status, body = server.get("nosuch.paas.localhost")
    assert status == 404 and "shop" not in body

    commit_files(repo, {"index.html": "hello v2\n"}, "v2")
    second = server.push(repo, "shop")
    assert second.returncode == 0, second.stderr
    assert server.get(server.host("shop")) == (200, "hello v2\n")
    label = f"gitpaas.instance={server.instance}"
    remaining = wait_for(lambda: [c.name for c in docker_client.containers.list(
        all=True, filters={"label": label})] == [f"{server.instance}.shop.v2.web.1"])
    assert remaining, "the previous release's container was not retired"

    commit_files(repo, {"Dockerfile": httpd_app(busybox_image, "")["Dockerfile"]
                        + "RUN exit 3\n"}, "broken")
    broken = server.push(repo, "shop")
    assert broken.returncode != 0
    assert "[remote rejected] main -> main (deploy failed: build failed" in broken.stderr
    assert server.get(server.host("shop")) == (200, "hello v2\n")
    containers = docker_client.containers.list(all=True, filters={"label": label})
    assert [c.name for c in containers] == [f"{server.instance}.shop.v2.web.1"]


def test_failed_health_check_rejects_push(server, busybox_image, tmp_path, docker_client):
    repo = make_repo(tmp_path / "hc", httpd_app(busybox_image, "up\n"))
    assert server.push(repo, "hc").returncode == 0
    # httpd serving an empty directory answers 404 < 500: make it crash instead.
    commit_files(repo, {"Dockerfile": f"FROM {busybox_image}\nCMD [\"/bin/false\"]\n"}, "crash")
    result = server.push(repo, "hc")
    assert result.returncode != 0
    assert "deploy failed: health check of web.1" in result.stderr
    assert server.get(server.host("hc")) == (200, "up\n")
    label = [f"gitpaas.instance={server.instance}", "gitpaas.app=hc"]
    names = [c.name for c in docker_client.containers.list(all=True, filters={"label": label})]
    assert names == [f"{server.instance}.hc.v1.web.1"]


def test_a_failed_first_build_leaves_no_network(server, busybox_image, tmp_path,
                                                docker_client):
    """The app's network is made beside its first build (issue 17): a first push that
    fails takes it away again (nothing else would while the app exists); the next push
    makes it anew."""
    repo = make_repo(tmp_path / "nonet", {"Dockerfile": f"FROM {busybox_image}\nRUN false\n"})
    label = {"label": f"gitpaas.instance={server.instance}"}
    before = {n["Name"] for n in docker_client.api.networks(filters=label)}
    result = server.push(repo, "nonet")
    assert result.returncode != 0
    # Neither its own network nor a spare it claimed (issue 17) is left, nor its claim.
    after = {n["Name"] for n in docker_client.api.networks(filters=label)}
    assert server.network_of("nonet") == f"{server.instance}.nonet"
    assert f"{server.instance}.nonet" not in after
    spares = {n for n in before if ".spare_" in n}
    lost = spares - after
    assert len(lost) == (1 if spares else 0)

    def networks(name: str) -> list[str]:
        return [n["Name"] for n in docker_client.api.networks(names=[name])
                if n["Name"] == name]

    commit_files(repo, httpd_app(busybox_image, "up\n"), "fixed")
    assert server.push(repo, "nonet").returncode == 0
    assert server.get(server.host("nonet")) == (200, "up\n")
    name = server.network_of("nonet")
    assert networks(name) == [name] and name not in lost


def test_a_push_that_creates_its_app_starts_its_network_at_once(server, busybox_image,
                                                                tmp_path, docker_client):
    """Issue 17, scale: Docker's network create (0.1-0.2 s) starts when the push creates
    the app, while the client still sends its pack, not only at the build: a first push
    that deploys nothing leaves the app with its network, for its first deploy."""
    repo = make_repo(tmp_path / "early", httpd_app(busybox_image, "early\n"))
    result = server.push(repo, "early", "HEAD:refs/heads/feature")
    assert result.returncode == 0, result.stderr
    assert "not deployed" in result.stderr
    wait_for(lambda: [n for n in docker_client.api.networks(
        names=[server.network_of("early")]) if n["Name"] == server.network_of("early")], 30)
    assert server.push(repo, "early").returncode == 0
    assert server.get(server.host("early")) == (200, "early\n")


def test_a_new_app_runs_on_a_spare_network_that_serve_makes_again(server, busybox_image,
                                                                 tmp_path, docker_client):
    """Issue 17, scale: ``gitpaas serve`` keeps two spare app networks; a new app's push
    claims one (its container is on it alone), the filler makes another after the
    deploy, and ``apps:destroy`` removes the claimed one instead of returning it."""
    prefix = f"{server.instance}.spare_"

    def spares() -> set[str]:  # claimed ones included: the store says which are
        found = docker_client.api.networks(filters={"label": [
            f"gitpaas.instance={server.instance}", "gitpaas.spare"]})
        return {n["Name"] for n in found if n["Name"].startswith(prefix)}

    wait_for(lambda: len(spares()) >= 2, 30)
    repo = make_repo(tmp_path / "pooled", httpd_app(busybox_image, "pooled\n"))
    assert server.push(repo, "pooled").returncode == 0
    assert server.get(server.host("pooled")) == (200, "pooled\n")
    name = server.network_of("pooled")
    assert name.startswith(prefix)
    web = docker_client.containers.list(filters={"label": [
        f"gitpaas.instance={server.instance}", "gitpaas.app=pooled"]})[0]
    assert list(web.attrs["NetworkSettings"]["Networks"]) == [name]
    # the filler makes another (after the starts); the claimed one keeps its labels
    # (Docker's are immutable) but is the app's now
    wait_for(lambda: len(spares() - {name}) >= 2, 30)
    assert server.ssh("apps:destroy", "pooled", "--confirm", "pooled").returncode == 0
    assert not [n for n in docker_client.api.networks(names=[name]) if n["Name"] == name]
    assert name not in spares()


def test_push_to_other_branch_is_stored_not_deployed(server, busybox_image, tmp_path):
    repo = make_repo(tmp_path / "feat", httpd_app(busybox_image, "main\n"))
    assert server.push(repo, "feat").returncode == 0
    commit_files(repo, {"index.html": "feature\n"}, "feature work")
    result = server.push(repo, "feat", "HEAD:refs/heads/feature")
    assert result.returncode == 0, result.stderr
    assert "not deployed" in result.stderr
    assert server.get(server.host("feat")) == (200, "main\n")
    # The branch is stored: a clone over ssh sees it.
    clone = tmp_path / "clone"
    from tests.harness import git

    git(tmp_path, "clone", "-q", "-b", "feature", server.url("feat"), str(clone),
        env=server.git_env())
    assert (clone / "index.html").read_text() == "feature\n"


def test_unregistered_key_cannot_push(server, busybox_image, tmp_path):
    from tests.harness import make_key

    stranger = make_key(tmp_path, "stranger")
    repo = make_repo(tmp_path / "nope", httpd_app(busybox_image, "x\n"))
    result = server.push(repo, "nope", key=stranger)
    assert result.returncode != 0
    assert "Permission denied" in result.stderr


def test_atomic_pushes_are_not_offered(server, busybox_image, tmp_path):
    """dulwich would deploy one ref while refusing the push as a whole: no --atomic."""
    repo = make_repo(tmp_path / "atom", httpd_app(busybox_image, "a\n"))
    result = server.push(repo, "atom", "main", None, "--atomic")
    assert result.returncode != 0
    assert "does not support --atomic" in result.stderr
