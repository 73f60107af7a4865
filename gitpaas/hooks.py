"""Platform lifecycle hooks: executables run in name order at each event.

Events: ``pre-build``, ``pre-release``, ``post-deploy``, ``post-destroy``, and ``notify``
(a problem an operator must hear of: a failed deploy or backup, a crash loop, a full
disk; see ``notify.py``). Each hook gets
the event as JSON on stdin and ``APP``, ``RELEASE``, ``IMAGE``, ``EVENT`` in its
environment; its output goes to the push. A ``pre-*`` hook that exits non-zero aborts
the deploy with its last line as the reason. Hooks live in ``<dir>/<event>/``: the
project's ``hooks/`` directory and the operator's ``hooks_dir`` setting.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from .errors import DeployError
from .settings import Settings

EVENTS = ("pre-build", "pre-release", "post-deploy", "post-destroy", "cron-failed", "notify")
HOOK_TIMEOUT = 300
SHIPPED = Path(__file__).resolve().parent.parent / "hooks"


def _kill_group(pid: int) -> None:
    """Kill a hook and whatever it started (they share its session)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def hook_dirs(webhook_url: str, operator_dir: str) -> list[Path]:
    """Where hooks live: the shipped ones (only the webhook notifier, skipped without a URL:
    it saves a Python start-up per event) and the operator's ``hooks_dir``."""
    dirs = [SHIPPED] if webhook_url else []
    if operator_dir:
        dirs.append(Path(operator_dir))
    return dirs


def run_platform_hooks(settings: Settings, event: str, payload: Mapping[str, object],
                       output: Callable[[str], None]) -> None:
    """``run_hooks`` of ``event`` in the directories ``settings`` name (``hook_dirs``),
    with ``GITPAAS_WEBHOOK_URL`` in the environment when it is set."""
    env = {"GITPAAS_WEBHOOK_URL": settings.webhook_url} if settings.webhook_url else {}
    run_hooks(hook_dirs(settings.webhook_url, settings.hooks_dir), event, payload, output, env)


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
              output: Callable[[str], None], extra_env: Mapping[str, str] | None = None,
              timeout: float = HOOK_TIMEOUT) -> None:
    """Run every hook of ``event``; raise ``DeployError`` when a ``pre-*`` hook fails."""
    assert event in EVENTS, event
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "EVENT": event,
           "APP": str(payload.get("app", "")), "RELEASE": str(payload.get("release", "")),
           "IMAGE": str(payload.get("image", "")), **(extra_env or {})}
    data = json.dumps({"event": event, **payload}).encode()
    for path in hook_files(dirs, event):
        try:
            proc = subprocess.Popen([str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, env=env, cwd=path.parent,
                                    start_new_session=True)
        except OSError as exc:
            raise DeployError(f"{event} hook {path.name} cannot run: {exc.strerror}") from exc
        assert proc.stdin and proc.stdout
        # A hook that hangs (even one holding its output open) is killed at the deadline.
        watchdog = threading.Timer(timeout, _kill_group, args=(proc.pid,))
        watchdog.daemon = True
        watchdog.start()
        try:
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
            code = proc.wait()
        finally:
            watchdog.cancel()
        if code == -signal.SIGKILL:
            last = f"timed out after {timeout:.0f}s"
        if code != 0 and event.startswith("pre-"):
            raise DeployError(f"{event} hook {path.name} failed" + (f": {last}" if last else ""))
        if code != 0:
            output(f" !     {event} hook {path.name} exited {code}")
