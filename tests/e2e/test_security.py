"""Issue 7, points 4 and 8 end to end: crafted trees pushed with the real git client, and a
config canary that must never show up outside the app's environment."""

from __future__ import annotations

import json
import os
import secrets
import stat
from pathlib import Path

import pytest

from tests.e2e.test_push import httpd_app
from tests.harness import commit_files, make_repo

pytestmark = pytest.mark.timeout(600)


def plumb(repo: Path, *args: str, stdin: str | None = None) -> str:
    """A git plumbing command in ``repo``; its stdout stripped."""
    import subprocess

    return subprocess.run(["git", "-C", str(repo), *args], input=stdin, capture_output=True,
                          text=True, check=True).stdout.strip()


def blob(repo: Path, content: str) -> str:
    return plumb(repo, "hash-object", "-w", "--stdin", stdin=content)


def mktree(repo: Path, entries: list[tuple[str, str, str, str]]) -> str:
    lines = "".join(f"{mode} {kind} {sha}\t{name}\n" for mode, kind, sha, name in entries)
    return plumb(repo, "mktree", "--missing", stdin=lines)


def commit_on_top(repo: Path, extra: list[tuple[str, str, str, str]], message: str) -> None:
    """A commit whose tree is HEAD's plus ``extra`` entries, made with plumbing only."""
    listing = plumb(repo, "ls-tree", "HEAD")
    entries = [(m, k, s, n) for m, k, s, n in
               (line.replace("\t", " ").split(" ", 3) for line in listing.splitlines())]
    tree = mktree(repo, entries + extra)
    commit = plumb(repo, "commit-tree", tree, "-p", "HEAD", "-m", message)
    plumb(repo, "update-ref", "refs/heads/main", commit)


OUTSIDE = Path("/tmp") / f"gitpaas-escape-{secrets.token_hex(4)}"


def unsafe_entries(repo: Path) -> dict[str, list[tuple[str, str, str, str]]]:
    payload = blob(repo, "pwned\n")
    inner = mktree(repo, [("100644", "blob", payload, "config"), ("100644", "blob", payload,
                                                                   "pwned")])
    escape = blob(repo, str(OUTSIDE))
    relative_escape = blob(repo, "../../../../../../../../" + str(OUTSIDE).lstrip("/"))
    return {
        ".git": [("040000", "tree", inner, ".git")],
        ".GIT": [("040000", "tree", inner, ".GIT")],
        "git~1": [("040000", "tree", inner, "git~1")],
        "..": [("040000", "tree", inner, "..")],
        ".git.": [("040000", "tree", inner, ".git.")],
        "absolute symlink, then a path through it": [
            ("120000", "blob", escape, "link"), ("040000", "tree", inner, "link")],
        "relative escaping symlink": [("120000", "blob", relative_escape, "up")],
        "escape through another symlink": [("120000", "blob", blob(repo, "."), "s"),
                                           ("120000", "blob", blob(repo, "s/.."), "x")],
        "submodule": [("160000", "commit", "1" * 40, "sub")],
    }


def instance_images(docker_client, instance: str) -> set[str]:
    """This server's images (the engine is shared with other test runs)."""
    return {i.id for i in docker_client.images.list()
            if any(t.startswith(f"{instance}/") for t in i.tags)}


@pytest.fixture(scope="module")
def safe_app(server, busybox_image, tmp_path_factory):
    files = httpd_app(busybox_image, "safe\n")
    repo = make_repo(tmp_path_factory.mktemp("unsafe") / "safe", files)
    assert server.push(repo, "safe").returncode == 0
    return repo


def test_unsafe_trees_are_refused_and_write_nothing_outside(server, safe_app, docker_client):
    repo = safe_app
    head = plumb(repo, "rev-parse", "HEAD")
    images_before = instance_images(docker_client, server.instance)
    for name, extra in unsafe_entries(repo).items():
        plumb(repo, "update-ref", "refs/heads/main", head)
        commit_on_top(repo, extra, f"unsafe: {name}")
        result = server.push(repo, "safe", "main", None, "--force")
        assert result.returncode != 0, (name, result.stderr)
        # Refused when the pack is stored (git index-pack --strict: fsck's checks), or
        # else by the build context's checks before any build.
        fsck = "remote unpack failed: fsck error" in result.stderr
        assert fsck or "deploy failed:" in result.stderr, (name, result.stderr)
        assert (("hasDot" in result.stderr or "duplicateEntries" in result.stderr) if fsck
                else ("unsafe path" in result.stderr or "points outside" in result.stderr
                      or "submodules are not supported" in result.stderr)), (name, result.stderr)
        assert not OUTSIDE.exists(), name
        assert server.get(server.host("safe")) == (200, "safe\n"), name
    assert not (server.data_dir / "repos" / "safe.git" / "pwned").exists()
    assert instance_images(docker_client, server.instance) == images_before
    plumb(repo, "update-ref", "refs/heads/main", head)


def test_setuid_bits_never_reach_the_image(server, safe_app, busybox_image, docker_client):
    repo = safe_app
    suid = blob(repo, "#!/bin/sh\necho root\n")
    files = httpd_app(busybox_image, "suid\n")
    files["Dockerfile"] += "COPY suid /suid\n"
    commit_files(repo, files, "dockerfile copies suid")
    commit_on_top(repo, [("104755", "blob", suid, "suid")], "a set-uid file")
    result = server.push(repo, "safe", "main", None, "--force")
    assert result.returncode == 0, result.stderr
    release = json.loads(server.gitpaas("releases", "safe", "--json").stdout)[0]
    image = release.get("image") or f"{server.instance}/safe:v{release['version']}"
    out = docker_client.containers.run(image, ["stat", "-c", "%a", "/suid"], remove=True)
    assert out.decode().strip() == "755"


def test_config_canary_never_leaks(server, busybox_image, tmp_path, docker_client):
    canary = "canary-" + secrets.token_hex(12)
    repo = make_repo(tmp_path / "vault", httpd_app(busybox_image, "vault\n"))
    first = server.push(repo, "vault")
    assert first.returncode == 0, first.stderr
    setting = server.ssh("config:set", "vault", f"SECRET_TOKEN={canary}")
    assert setting.returncode == 0, setting.stderr
    commit_files(repo, {"index.html": "vault v2\n"}, "v2")
    push = server.push(repo, "vault")
    assert push.returncode == 0, push.stderr
    # It is set, and reaches the app's environment (the one place it must be) ...
    assert server.ssh("config:get", "vault", "SECRET_TOKEN").stdout.strip() == canary
    running = docker_client.containers.list(filters={"label": [
        f"gitpaas.instance={server.instance}", "gitpaas.app=vault"]})
    assert any(f"SECRET_TOKEN={canary}" in c.attrs["Config"]["Env"] for c in running)
    # ... and nowhere else.
    needle = canary.encode()
    for path in server.data_dir.rglob("*"):
        if path.is_file():
            assert needle not in path.read_bytes(), path
    assert canary not in server.log()
    assert canary not in setting.stdout + setting.stderr
    assert canary not in first.stdout + first.stderr + push.stdout + push.stderr
    for tag in [t for i in docker_client.images.list() for t in i.tags
                if t.startswith(f"{server.instance}/vault:")]:
        image = docker_client.images.get(tag)
        assert canary not in json.dumps(image.attrs), tag  # config, env, labels
        assert canary not in json.dumps(docker_client.api.history(tag)), tag
    key = server.data_dir / "secret.key"
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
