"""Bare repositories under the data dir, one per app."""

from __future__ import annotations

import shutil
from pathlib import Path

from dulwich.errors import NotGitRepository
from dulwich.refs import Ref
from dulwich.repo import Repo

from .. import names


def repo_path(repos_dir: Path, app: str) -> Path:
    """The bare repo of ``app`` (the name is validated: nothing outside ``repos_dir``)."""
    return repos_dir / f"{names.app_name(app)}.git"


def ensure_repo(repos_dir: Path, app: str, branch: str, max_push_bytes: int) -> Repo:
    """Open the app's bare repo, creating it with HEAD on ``branch`` if needed."""
    path = repo_path(repos_dir, app)
    try:
        repo = Repo(str(path))
    except NotGitRepository:
        path.mkdir(parents=True, exist_ok=True)
        repo = Repo.init_bare(str(path))
        repo.refs.set_symbolic_ref(Ref(b"HEAD"), Ref(b"refs/heads/" + branch.encode()))
    set_max_input_size(repo, max_push_bytes)
    return repo


def set_max_input_size(repo: Repo, max_push_bytes: int) -> None:
    """``receive.maxInputSize``, which dulwich enforces on the incoming pack (kept in step
    with the setting when it changes)."""
    config = repo.get_config()
    wanted = str(max_push_bytes).encode()
    try:
        if config.get((b"receive",), b"maxInputSize") == wanted:
            return
    except KeyError:
        pass
    config.set((b"receive",), b"maxInputSize", wanted)
    config.write_to_path()


def remove_repo(repos_dir: Path, app: str) -> None:
    shutil.rmtree(repo_path(repos_dir, app), ignore_errors=True)


def parse_repo_arg(arg: str) -> str:
    """Turn git's repo argument (``'shop.git'``, ``/shop``, ``shop``) into an app name."""
    name = arg.strip()
    if name.startswith("/"):
        name = name[1:]
    if name.endswith(".git"):
        name = name[: -len(".git")]
    return names.app_name(name)
