"""Integration tests: what every test leaves behind is removed."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from .routerkit import made_dirs


@pytest.fixture(autouse=True)
def _remove_edge_dirs() -> Iterator[None]:
    """The edge directories make_config() made (a test that starts an edge with Edge()
    itself, or only renders a config, left them in /tmp)."""
    yield
    while made_dirs:
        shutil.rmtree(made_dirs.pop(), ignore_errors=True)
