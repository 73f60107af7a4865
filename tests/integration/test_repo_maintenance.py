"""Issue 19: app repos are cleaned and repacked (real dulwich repos, the real git)."""

from __future__ import annotations

import contextlib
import subprocess

import pytest

from gitpaas.errors import Conflict
from gitpaas.git import repos
from gitpaas.git.maintenance import Maintainer, clean_partial, needs_gc


def run_git(path, *args: str, input: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(path), *args], input=input, capture_output=True,
                          check=False)


def exists(path, sha: str) -> bool:
    return run_git(path, "cat-file", "-e", sha).returncode == 0


def commit(path, text: str, parent: str | None = None) -> str:
    blob = run_git(path, "hash-object", "-w", "--stdin", input=text.encode()).stdout.decode()
    tree = run_git(path, "mktree", input=f"100644 blob {blob.strip()}\tf\n".encode())
    args = ["commit-tree", tree.stdout.decode().strip(), "-m", text]
    if parent:
        args += ["-p", parent]
    out = subprocess.run(["git", "-C", str(path), *args], capture_output=True, check=True,
                         env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e",
                              "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@e",
                              "PATH": "/usr/bin:/bin"})
    return out.stdout.decode().strip()


@pytest.fixture
def app_repo(tmp_path):
    repos_dir = tmp_path / "repos"
    repo = repos.ensure_repo(repos_dir, "shop", "main", 1 << 20)
    repo.close()
    return repos_dir, repos.repo_path(repos_dir, "shop")


def no_lock(app: str, what: str):
    return contextlib.nullcontext()


def test_gc_prunes_what_no_ref_reaches_and_keeps_the_rest(app_repo):
    repos_dir, path = app_repo
    kept = commit(path, "live")
    assert run_git(path, "update-ref", "refs/heads/main", kept).returncode == 0
    refused = commit(path, "refused push", kept)  # stored, the ref never moved
    assert needs_gc(path)
    maintainer = Maintainer(repos_dir, no_lock, lambda: ["shop"])
    assert maintainer.run_once() == ["shop"]
    assert exists(path, kept)
    assert not exists(path, refused)
    assert len(list((path / "objects" / "pack").glob("*.pack"))) == 1
    assert not needs_gc(path)
    assert maintainer.run_once() == []  # nothing to do: git is not run again
    # dulwich still reads the repacked repo.
    repo = repos.ensure_repo(repos_dir, "shop", "main", 1 << 20)
    assert repo.refs[b"refs/heads/main"] == kept.encode()
    repo.close()


def test_clean_partial_removes_unfinished_receives(app_repo):
    _, path = app_repo
    objects = path / "objects"
    (objects / "tmp_pack_abc").write_bytes(b"PACK partial")
    (objects / "pack" / "pack-1234.pack").write_bytes(b"PACK no index")
    (objects / "pack" / "pack-5678.pack").write_bytes(b"PACK")
    (objects / "pack" / "pack-5678.idx").write_bytes(b"idx")
    removed = clean_partial(path)
    assert sorted(removed) == ["pack-1234.pack", "tmp_pack_abc"]
    assert (objects / "pack" / "pack-5678.pack").exists()


def test_a_busy_app_is_skipped(app_repo):
    repos_dir, path = app_repo
    (path / "objects" / "tmp_pack_abc").write_bytes(b"PACK partial")

    def busy(app: str, what: str):
        raise Conflict(f"{app} is busy")

    assert Maintainer(repos_dir, busy, lambda: ["shop"]).run_once() == []
    assert (path / "objects" / "tmp_pack_abc").exists()  # a receive may be writing it


def test_start_up_removes_half_made_repos(app_repo):
    repos_dir, _ = app_repo
    aside = repos_dir / ".new-blog.git-x1"
    aside.mkdir()
    Maintainer(repos_dir, no_lock, lambda: ["shop"]).start_up()
    assert not aside.exists()


def test_ensure_repo_is_idempotent_under_concurrency(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    repos_dir = tmp_path / "repos"

    def open_it(_: int) -> bytes:
        repo = repos.ensure_repo(repos_dir, "race", "main", 1 << 20)
        try:
            return repo.refs.read_ref(b"HEAD")
        finally:
            repo.close()

    with ThreadPoolExecutor(8) as pool:
        heads = list(pool.map(open_it, range(16)))
    assert set(heads) == {b"ref: refs/heads/main"}
    assert [p.name for p in repos_dir.iterdir() if p.name.startswith(".new-")] == []
