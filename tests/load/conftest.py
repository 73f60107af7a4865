"""Load tests: a small version runs in CI; ``GITPAAS_LOAD_FULL=1`` runs the full one.

    GITPAAS_LOAD_FULL=1 .venv/bin/python -m pytest tests/load -s -p no:cacheprovider

prints the figures recorded in docs/reliability.md (and writes them as JSON to
``$GITPAAS_LOAD_REPORT_DIR`` when set).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.e2e.conftest import clients  # noqa: F401 - fixtures for tests/load
from tests.harness import serving

FULL = os.environ.get("GITPAAS_LOAD_FULL", "") not in ("", "0")
# The full run opens 200 SSH sessions at once from 127.0.0.1, standing for many users: it
# measures capacity, so the per-source cap and throttle (made for one client) are lifted.
# The small run in CI keeps the defaults (20 sessions at once fit them).
LOAD_ENV = {"GITPAAS_SSH_MAX_CONNECTIONS_PER_SOURCE": "0",
            "GITPAAS_SSH_RATE_PER_SOURCE": "0"} if FULL else {}


@pytest.fixture(scope="module")
def server(tmp_path_factory, redis_url, docker_client, clients):  # noqa: F811
    """A running server with an admin key registered (``server.admin_key``)."""
    with serving(tmp_path_factory.mktemp("server"), redis_url, docker_client,
                 extra_env=LOAD_ENV) as srv:
        yield srv


def size(full: int, small: int, env: str) -> int:
    """``$env`` if set, else ``full`` under GITPAAS_LOAD_FULL, else ``small``."""
    return int(os.environ.get(env) or (full if FULL else small))


def report(name: str, figures: dict) -> None:
    """Print the figures (run with -s to see them) and keep them as JSON if asked."""
    text = json.dumps(figures, indent=2, sort_keys=True)
    print(f"\n=== {name}\n{text}")
    out = os.environ.get("GITPAAS_LOAD_REPORT_DIR")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / f"{name}.json").write_text(text + "\n")
