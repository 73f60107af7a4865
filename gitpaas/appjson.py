"""What an app says about its own deploy: ``app.json`` (Dokku's fields) and ``CHECKS``.

app.json::

    {"healthchecks": {"web": [{"path": "/health", "content": "ok", "attempts": 5,
                               "timeout": 5, "wait": 1, "initialDelay": 0}]},
     "scripts": {"dokku": {"predeploy": "python migrate.py", "postdeploy": "..."}},
     "cron": [{"command": "python report.py", "schedule": "@daily"}]}

CHECKS (Dokku's older file)::

    WAIT=2          # seconds between attempts
    TIMEOUT=5       # seconds per attempt
    ATTEMPTS=10
    /health  ok     # path and the content the answer must contain
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from .cron import CronJob, parse_cron
from .errors import InvalidInput
from .health import WebCheck


@dataclass(frozen=True)
class AppSpec:
    """The deploy-time settings an app carries in its repository."""

    healthchecks: dict[str, list[WebCheck]] = field(default_factory=dict)
    predeploy: str = ""
    postdeploy: str = ""
    cron: list[CronJob] = field(default_factory=list)


def _number(value: object, name: str, low: float = 0, high: float = 3600) -> float:
    try:
        if not isinstance(value, int | float | str):
            raise TypeError(type(value).__name__)
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"app.json: healthcheck {name} must be a number") from None
    if not low <= number <= high:
        raise InvalidInput(f"app.json: healthcheck {name} must be between {low} and {high}")
    return number


def _check(raw: object) -> WebCheck:
    if not isinstance(raw, dict):
        raise InvalidInput("app.json: each healthcheck must be an object")
    if raw.get("type", "startup") not in {"startup", "liveness", "readiness"}:
        raise InvalidInput(f"app.json: unknown healthcheck type {raw.get('type')!r}")
    path = str(raw.get("path", "/"))
    if not path.startswith("/") or any(c in path for c in "\r\n "):
        raise InvalidInput(f"app.json: healthcheck path {path!r} must start with '/'")
    return WebCheck(
        path=path, content=str(raw.get("content", "")),
        attempts=int(_number(raw.get("attempts", 5), "attempts", 1, 100)),
        attempt_timeout=_number(raw.get("timeout", 5), "timeout", 0.1, 600),
        wait=_number(raw.get("wait", 1), "wait", 0, 600),
        initial_delay=_number(raw.get("initialDelay", 0), "initialDelay", 0, 600))


def parse_app_json(text: str) -> AppSpec:
    """Parse app.json; raise ``InvalidInput`` with a one-line reason when it is wrong."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"app.json is not valid JSON: {exc.msg} at line {exc.lineno}") from exc
    if not isinstance(data, dict):
        raise InvalidInput("app.json must hold an object")
    checks: dict[str, list[WebCheck]] = {}
    for process, raw in (data.get("healthchecks") or {}).items():
        items = raw if isinstance(raw, list) else [raw]
        startup = [i for i in items if not isinstance(i, dict) or
                   i.get("type", "startup") == "startup"]
        checks[str(process)] = [_check(i) for i in startup]
    scripts = (data.get("scripts") or {}).get("dokku") or {}
    if not isinstance(scripts, dict):
        raise InvalidInput("app.json: scripts.dokku must be an object")
    return AppSpec(checks, str(scripts.get("predeploy") or ""),
                   str(scripts.get("postdeploy") or ""), parse_cron(data.get("cron")))


def parse_checks(text: str) -> list[WebCheck]:
    """Parse a Dokku CHECKS file into web checks."""
    options = {"WAIT": 5.0, "TIMEOUT": 30.0, "ATTEMPTS": 5.0}
    found: list[tuple[str, str]] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, eq, value = line.partition("=")
        if eq and name.strip() in options:
            options[name.strip()] = _number(value.strip(), name.strip(), 0, 3600)
            continue
        if not line.startswith("/"):
            raise InvalidInput(f"CHECKS line {number}: expected 'NAME=VALUE' or '/path content'")
        path, _, content = line.partition(" ")
        found.append((path, content.strip()))
    return [WebCheck(path=p, content=c, attempts=max(1, int(options["ATTEMPTS"])),
                     attempt_timeout=max(0.1, options["TIMEOUT"]), wait=options["WAIT"])
            for p, c in found]
