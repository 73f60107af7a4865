"""Health checks of new containers."""

from __future__ import annotations

import http.client
import time
from collections.abc import Callable
from dataclasses import dataclass

from .errors import DeployError
from .runtime import ContainerInfo


@dataclass(frozen=True)
class WebCheck:
    """Dokku-style check: GET ``path`` until the status is below 500 (and ``content``)."""

    path: str = "/"
    content: str = ""
    timeout: float = 30.0
    attempt_timeout: float = 5.0
    initial_delay: float = 0.0


def probe(host: str, port: int, check: WebCheck) -> tuple[int, str]:
    """One GET; returns (status, body prefix) or raises OSError."""
    conn = http.client.HTTPConnection(host, port, timeout=check.attempt_timeout)
    try:
        conn.request("GET", check.path, headers={"Host": "gitpaas-healthcheck",
                                                 "User-Agent": "gitpaas-healthcheck"})
        resp = conn.getresponse()
        return resp.status, resp.read(65536).decode("utf-8", "replace")
    finally:
        conn.close()


def wait_healthy(info: ContainerInfo, check: WebCheck,
                 refresh: Callable[[ContainerInfo], ContainerInfo | None],
                 last_logs: Callable[[ContainerInfo], str]) -> None:
    """Wait until the container answers; raise ``DeployError`` saying why it did not."""
    label = f"{info.process}.{info.replica}"
    if check.initial_delay:
        time.sleep(check.initial_delay)
    deadline = time.monotonic() + check.timeout
    last = "no answer"
    while True:
        current = refresh(info)
        if current is None or current.status in {"exited", "dead"} or (
                current.restart_count > 0):
            tail = " | ".join(last_logs(info).strip().splitlines()[-3:])
            raise DeployError(f"health check of {label}: the container exited"
                              + (f" ({tail})" if tail else ""))
        if current.port:
            try:
                status, body = probe(current.host, current.port, check)
                if status < 500 and (not check.content or check.content in body):
                    return
                last = f"GET {check.path} returned {status}" if status >= 500 else (
                    f"GET {check.path} did not contain {check.content!r}")
            except (OSError, http.client.HTTPException) as exc:
                last = f"GET {check.path} failed: {getattr(exc, 'strerror', None) or exc!r}"
        if time.monotonic() >= deadline:
            raise DeployError(f"health check of {label}: {last}")
        time.sleep(0.1)
