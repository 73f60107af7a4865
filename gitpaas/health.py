"""Health checks of new containers."""

from __future__ import annotations

import http.client
import time
from collections.abc import Callable
from dataclasses import dataclass

from .errors import DeployError
from .runtime import ContainerInfo

POLL = 0.1
# The default check's first retries come sooner: a new server is usually listening
# within a few ms of its start, and a whole POLL lost on each push is visible.
FIRST_POLL = 0.005


@dataclass(frozen=True)
class WebCheck:
    """GET ``path`` until the answer passes (and the body holds ``content``).

    With ``attempts`` (app.json / CHECKS: checks the app declared), that many tries
    ``wait`` seconds apart, and the status must be 200-399 (as Dokku's ``curl --fail`` and
    Kubernetes' httpGet probes); without (the default ``GET /`` of an app that declared
    none), tries every 100 ms until ``deadline`` seconds have passed, and any status below
    500 passes (an app without ``/`` is still up).
    """

    path: str = "/"
    content: str = ""
    attempts: int | None = None
    attempt_timeout: float = 5.0
    wait: float = POLL
    initial_delay: float = 0.0
    deadline: float = 30.0

    @property
    def explicit(self) -> bool:
        """Declared by the app (app.json or CHECKS), not the default check."""
        return self.attempts is not None

    def status_ok(self, status: int) -> bool:
        return 200 <= status < 400 if self.explicit else status < 500


def probe(host: str, port: int, check: WebCheck) -> tuple[int, str]:
    """One GET; returns (status, body prefix) or raises OSError / HTTPException."""
    conn = http.client.HTTPConnection(host, port, timeout=check.attempt_timeout)
    try:
        conn.request("GET", check.path, headers={"Host": "gitpaas-healthcheck",
                                                 "User-Agent": "gitpaas-healthcheck"})
        resp = conn.getresponse()
        return resp.status, resp.read(65536).decode("utf-8", "replace")
    finally:
        conn.close()


def _exited(info: ContainerInfo, current: ContainerInfo | None,
            last_logs: Callable[[ContainerInfo], str]) -> DeployError | None:
    if current is None or current.status in {"exited", "dead"} or current.restart_count > 0:
        tail = " | ".join(last_logs(info).strip().splitlines()[-3:])
        return DeployError(f"health check of {info.process}.{info.replica}: the container "
                           "exited" + (f" ({tail})" if tail else ""))
    return None


def wait_healthy(info: ContainerInfo, check: WebCheck,
                 refresh: Callable[[ContainerInfo], ContainerInfo | None],
                 last_logs: Callable[[ContainerInfo], str]) -> None:
    """Wait until the container passes ``check``; raise ``DeployError`` saying why not."""
    label = f"{info.process}.{info.replica}"
    if check.initial_delay:
        time.sleep(check.initial_delay)
    deadline = time.monotonic() + check.deadline
    tries = 0
    last = "no answer"
    while True:
        tries += 1
        current = refresh(info)
        failure = _exited(info, current, last_logs)
        if failure:
            raise failure
        if current and current.port:
            try:
                status, body = probe(current.host, current.port, check)
                if check.status_ok(status) and (not check.content or check.content in body):
                    return
                last = (f"GET {check.path} returned {status}" if not check.status_ok(status)
                        else f"GET {check.path} did not contain {check.content!r}")
            except (OSError, http.client.HTTPException) as exc:
                last = f"GET {check.path} failed: {getattr(exc, 'strerror', None) or exc!r}"
        if check.attempts is not None:
            if tries >= check.attempts:
                raise DeployError(f"health check of {label}: {last}"
                                  f" (after {tries} attempts)")
        elif time.monotonic() >= deadline:
            raise DeployError(f"health check of {label}: {last}")
        time.sleep(check.wait if check.attempts is not None else default_poll(tries))


def wait_stable(info: ContainerInfo, seconds: float,
                refresh: Callable[[ContainerInfo], ContainerInfo | None],
                last_logs: Callable[[ContainerInfo], str]) -> None:
    """A process without a port must stay up ``seconds`` without restarting."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        failure = _exited(info, refresh(info), last_logs)
        if failure:
            raise DeployError(str(failure).replace("health check of", "start of"))
        time.sleep(POLL)


def default_poll(tries: int) -> float:
    """Seconds before try ``tries + 1`` of the default check: 5 ms, doubling up to POLL."""
    return min(POLL, FIRST_POLL * 2.0 ** (tries - 1))
