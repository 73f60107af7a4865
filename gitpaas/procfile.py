"""Procfile parsing: ``type: command`` lines."""

from __future__ import annotations

from . import names
from .errors import InvalidInput


def parse(text: str) -> dict[str, str]:
    """Return ``{process type: command}``; comments and blank lines are skipped."""
    processes: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, command = line.partition(":")
        if not sep or not command.strip():
            raise InvalidInput(f"Procfile line {number}: expected 'type: command'")
        names.process_type(name.strip())
        processes[name.strip()] = command.strip()
    return processes
