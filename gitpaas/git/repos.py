"""Bare repositories under the data dir, one per app."""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dulwich.errors import NotGitRepository
from dulwich.refs import Ref
from dulwich.repo import Repo

from .. import names
from ..errors import ServiceError


def repo_path(repos_dir: Path, app: str) -> Path:
    """The bare repo of ``app`` (the name is validated: nothing outside ``repos_dir``)."""
    return repos_dir / f"{names.app_name(app)}.git"


@contextmanager
def repo_lock(repos_dir: Path, app: str) -> Iterator[None]:
    """An exclusive ``flock`` for creating or reconfiguring the app's repo (held briefly;
    the kernel drops it if the holder dies)."""
    repos_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(repos_dir / f"{names.app_name(app)}.git.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def ensure_repo(repos_dir: Path, app: str, branch: str, max_push_bytes: int) -> Repo:
    """Open the app's bare repo, creating it with HEAD on ``branch`` if needed.

    Idempotent and safe to call concurrently: creation and config writes hold the repo's
    lock, and a new repo is built aside and renamed into place, so nobody ever opens a
    half-made one."""
    path = repo_path(repos_dir, app)
    try:
        repo = Repo(str(path))
        if _max_input_size(repo) == max_push_bytes:
            return repo
        repo.close()
    except NotGitRepository:
        pass
    with repo_lock(repos_dir, app):
        try:
            repo = Repo(str(path))
        except NotGitRepository:
            _create(path, branch)
            repo = Repo(str(path))
        set_max_input_size(repo, max_push_bytes)
        return repo


def _create(path: Path, branch: str) -> None:
    """Make a bare repo at ``path`` (under the repo lock): built aside, then renamed."""
    if path.exists():
        if any(path.iterdir()):
            raise ServiceError(f"{path} exists but is not a git repository; move it away")
        path.rmdir()
    aside = Path(tempfile.mkdtemp(prefix=f".new-{path.name}-", dir=path.parent))
    try:
        repo = Repo.init_bare(str(aside))
        repo.refs.set_symbolic_ref(Ref(b"HEAD"), Ref(b"refs/heads/" + branch.encode()))
        repo.close()
        os.rename(aside, path)
    finally:
        shutil.rmtree(aside, ignore_errors=True)


def _max_input_size(repo: Repo) -> int | None:
    try:
        return int(repo.get_config().get((b"receive",), b"maxInputSize"))
    except (KeyError, ValueError):
        return None


def set_max_input_size(repo: Repo, max_push_bytes: int) -> None:
    """``receive.maxInputSize``, which dulwich enforces on the incoming pack (kept in step
    with the setting when it changes; hold ``repo_lock`` around it)."""
    if _max_input_size(repo) == max_push_bytes:
        return
    config = repo.get_config()
    config.set((b"receive",), b"maxInputSize", str(max_push_bytes).encode())
    config.write_to_path()


def remove_repo(repos_dir: Path, app: str) -> None:
    shutil.rmtree(repo_path(repos_dir, app), ignore_errors=True)
    (repos_dir / f"{names.app_name(app)}.git.lock").unlink(missing_ok=True)


def parse_repo_arg(arg: str) -> str:
    """Turn git's repo argument (``'shop.git'``, ``/shop``, ``shop``) into an app name."""
    name = arg.strip()
    if name.startswith("/"):
        name = name[1:]
    if name.endswith(".git"):
        name = name[: -len(".git")]
    return names.app_name(name)
