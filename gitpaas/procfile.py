"""Procfile parsing: ``type: command`` lines."""

from __future__ import annotations

from . import names
from .errors import InvalidInput

RELEASE_PHASE = "release"  # a Procfile's release phase: run once per release, not kept up


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


def desired(processes: dict[str, str], formation: dict[str, int]
            ) -> dict[tuple[str, int], str]:
    """``{(process, replica): command}`` that a release's ``processes`` (its Procfile)
    and the app's ``formation`` ask for: ``web`` runs once and other types not at all
    unless scaled; no Procfile means one ``web`` running the image's CMD (command "")."""
    kept = {k: v for k, v in processes.items() if k != RELEASE_PHASE} or {"web": ""}
    return {(process, replica): command
            for process, command in sorted(kept.items())
            for replica in range(1, formation.get(process, 1 if process == "web" else 0) + 1)}
