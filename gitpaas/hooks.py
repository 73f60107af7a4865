"""Platform lifecycle hooks: executables run in name order at each event.

Events: ``pre-build``, ``pre-release``, ``post-deploy``, ``post-destroy``. Each hook gets
the event as JSON on stdin and ``APP``, ``RELEASE``, ``IMAGE``, ``EVENT`` in its
environment; its output goes to the push. A ``pre-*`` hook that exits non-zero aborts
the deploy with its last line as the reason. Hooks live in ``<dir>/<event>/``: the
project's ``hooks/`` directory and the operator's ``hooks_dir`` setting.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from .errors import DeployError

EVENTS = ("pre-build", "pre-release", "post-deploy", "post-destroy")
HOOK_TIMEOUT = 300
SHIPPED = Path(__file__).resolve().parent.parent / "hooks"


def hook_files(dirs: Iterable[Path], event: str) -> list[Path]:
    """The executables for ``event``, in name order (the project's first on a tie)."""
    found: dict[str, Path] = {}
    for directory in dirs:
        folder = Path(directory) / event
        if folder.is_dir():
            for path in folder.iterdir():
                if path.is_file() and os.access(path, os.X_OK) and path.name not in found:
                    found[path.name] = path
    return [found[name] for name in sorted(found)]


def run_hooks(dirs: Iterable[Path], event: str, payload: Mapping[str, object],
              output: Callable[[str], None], extra_env: Mapping[str, str] | None = None) -> None:
    """Run every hook of ``event``; raise ``DeployError`` when a ``pre-*`` hook fails."""
    assert event in EVENTS, event
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "EVENT": event,
           "APP": str(payload.get("app", "")), "RELEASE": str(payload.get("release", "")),
           "IMAGE": str(payload.get("image", "")), **(extra_env or {})}
    data = json.dumps({"event": event, **payload}).encode()
    for path in hook_files(dirs, event):
        try:
            proc = subprocess.Popen([str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, env=env, cwd=path.parent)
        except OSError as exc:
            raise DeployError(f"{event} hook {path.name} cannot run: {exc.strerror}") from exc
        assert proc.stdin and proc.stdout
        try:
            proc.stdin.write(data)
            proc.stdin.close()
        except BrokenPipeError:
            pass
        last = ""
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip()
            if line:
                last = line
                output(f"       {line}")
        try:
            code = proc.wait(HOOK_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = -9
        if code != 0 and event.startswith("pre-"):
            raise DeployError(f"{event} hook {path.name} failed" + (f": {last}" if last else ""))
        if code != 0:
            output(f" !     {event} hook {path.name} exited {code}")
