"""The restic client (Debian package ``restic``): one repository, one password file.

The password never appears on a command line or in a log: restic reads it from
``RESTIC_PASSWORD_FILE``. Other restic variables (``AWS_*``, ``RESTIC_CACHE_DIR`` ...)
pass through from gitpaas's environment, so an operator configures S3 or SFTP the way
restic documents.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from ..errors import InvalidInput, ServiceError

# One snapshot as ``restic snapshots --json`` prints it (id, short_id, time, hostname, ...).
Snapshot = dict[str, Any]

TIMEOUT = 6 * 3600


class Restic:
    """Runs ``restic`` against ``repo`` with the password in ``password_file``."""

    def __init__(self, repo: str, password_file: Path, cache_dir: Path | None = None) -> None:
        if not repo:
            raise InvalidInput("backups are not configured: set backup_repo"
                               " (GITPAAS_BACKUP_REPO) to a directory or a restic URL")
        self.repo = repo
        self.password_file = Path(password_file)
        self.cache_dir = cache_dir

    @property
    def is_local(self) -> bool:
        """Whether the repository is a local directory (not ``sftp:``, ``s3:`` ...)."""
        return self.repo.startswith("/")

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if k not in {"RESTIC_PASSWORD", "RESTIC_PASSWORD_COMMAND"}}
        env.update(RESTIC_REPOSITORY=self.repo, RESTIC_PASSWORD_FILE=str(self.password_file))
        if self.cache_dir:
            env["RESTIC_CACHE_DIR"] = str(self.cache_dir)
        return env

    def run(self, args: list[str], cwd: Path | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        """``restic ARGS`` (argument list, no shell); ``ServiceError`` on failure."""
        program = shutil.which("restic")
        if program is None:
            raise ServiceError("restic is not installed (Debian package restic)")
        if not self.password_file.is_file():
            raise InvalidInput(f"the backup password file {self.password_file} is missing"
                               " (backup_password_file)")
        try:
            result = subprocess.run([program, *args], env=self._env(), cwd=cwd,
                                    capture_output=True, text=True, timeout=TIMEOUT,
                                    stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            raise ServiceError(f"restic {args[0]} timed out") from exc
        if check and result.returncode != 0:
            lines = [x for x in result.stderr.strip().splitlines() if x.strip()]
            reason = lines[-1] if lines else f"exit {result.returncode}"
            raise ServiceError(f"restic {args[0]} failed: {reason}")
        return result

    def ensure_repo(self) -> bool:
        """Initialise the repository unless it exists; True if it was made now."""
        if self.run(["cat", "config"], check=False).returncode == 0:
            return False
        if self.is_local:
            try:
                Path(self.repo).mkdir(parents=True, exist_ok=True, mode=0o700)
            except OSError as exc:
                raise ServiceError(f"restic init failed: cannot make {self.repo}:"
                                   f" {exc.strerror}") from exc
        self.run(["init"])
        return True

    def backup(self, paths: list[str], cwd: Path, tags: list[str]) -> str:
        """Back up ``paths`` (relative ones are stored relative to ``cwd``); the new
        snapshot's id."""
        args = ["backup", "--json"]
        for tag in tags:
            args += ["--tag", tag]
        result = self.run([*args, "--", *paths], cwd=cwd)
        for line in reversed(result.stdout.splitlines()):
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if message.get("message_type") == "summary":
                return str(message["snapshot_id"])
        raise ServiceError("restic backup printed no summary")

    def snapshots(self, tag: str) -> list[Snapshot]:
        """The snapshots carrying ``tag``, oldest first."""
        result = self.run(["snapshots", "--json", "--tag", tag])
        return list(json.loads(result.stdout or "[]") or [])

    def restore(self, snapshot: str, tag: str, target: Path) -> None:
        """Restore ``snapshot`` (an id, or ``latest`` of ``tag``) into ``target``."""
        args = ["restore", snapshot, "--target", str(target)]
        if snapshot == "latest":
            args += ["--tag", tag]
        self.run(args)

    def forget(self, tag: str, daily: int, weekly: int) -> None:
        """Keep ``daily`` daily and ``weekly`` weekly snapshots of ``tag``; prune the rest."""
        self.run(["forget", "--tag", tag, "--group-by", "tags", "--keep-daily", str(daily),
                  "--keep-weekly", str(weekly), "--prune"])
