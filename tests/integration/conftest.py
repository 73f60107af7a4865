"""Integration tests: what every test leaves behind is removed."""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .routerkit import made_dirs


def _stop_nginx_in(directory: Path) -> None:
    """An nginx master still running from ``directory`` (its nginx.pid, and its command
    line naming the directory): a test that did not stop its edge."""
    try:
        pid = int((directory / "nginx.pid").read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return
    if str(directory).encode() not in cmdline:
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    if Path(f"/proc/{pid}").exists():
        os.kill(pid, signal.SIGKILL)


@pytest.fixture(autouse=True)
def _remove_edge_dirs() -> Iterator[None]:
    """The edge directories make_config() made (a test that starts an edge with Edge()
    itself, or only renders a config, left them in /tmp), and an nginx left running in
    one."""
    yield
    while made_dirs:
        directory = made_dirs.pop()
        _stop_nginx_in(directory)
        shutil.rmtree(directory, ignore_errors=True)
