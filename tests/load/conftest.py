"""Load tests: a small version runs in CI; ``GITPAAS_LOAD_FULL=1`` runs the full one.

    GITPAAS_LOAD_FULL=1 .venv/bin/python -m pytest tests/load -s -p no:cacheprovider

prints the figures recorded in docs/reliability.md (and writes them as JSON to
``$GITPAAS_LOAD_REPORT_DIR`` when set).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.e2e.conftest import clients, server  # noqa: F401 - fixtures for tests/load

FULL = os.environ.get("GITPAAS_LOAD_FULL", "") not in ("", "0")


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
