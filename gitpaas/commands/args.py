"""Values inside a command's arguments: counts and ``KEY=VALUE`` pairs (parsed once here).

The line itself (flags, options, the app, how many arguments) is parsed from each
command's declaration: see ``spec.py``.
"""

from __future__ import annotations

import re

from ..errors import InvalidInput

DIGITS_RE = re.compile(r"[0-9]{1,9}")  # ASCII only: str.isdigit() accepts '²' and '٣'
PAIR_RE = re.compile(r"[^=]*=.*")  # what a KEY=VALUE argument looks like (never an app)


def parse_count(value: str, what: str, low: int, high: int) -> int:
    """A whole number of ASCII digits from ``low`` to ``high``, else ``InvalidInput``."""
    if not DIGITS_RE.fullmatch(value) or not low <= int(value) <= high:
        raise InvalidInput(f"{what} takes a number from {low} to {high}, not {value!r}")
    return int(value)


def key_values(args: list[str], what: str = "KEY=VALUE") -> list[tuple[str, str]]:
    """``["K=V", ...]`` -> ``[(K, V), ...]``: only the first ``=`` splits, values are kept
    exactly; at least one pair. ``what`` names the form in errors (``PROCESS=COUNT``)."""
    if not args:
        raise InvalidInput(f"give at least one {what}")
    pairs = []
    for arg in args:
        key, eq, value = arg.partition("=")
        if not eq:
            raise InvalidInput(f"expected {what}, got {arg!r}")
        pairs.append((key, value))
    return pairs
