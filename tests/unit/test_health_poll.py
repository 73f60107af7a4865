"""Issue 17: the default health check retries soon after a container starts."""

from __future__ import annotations

import pytest

from gitpaas import health
from gitpaas.health import POLL, WebCheck, default_poll, wait_healthy
from gitpaas.runtime import ContainerInfo

INFO = ContainerInfo(id="c1", name="c1", app="a", release=1, process="web", replica=1,
                     status="running", host="127.0.0.1", port=5000, started_at="")


def test_the_default_poll_starts_at_5_ms_and_doubles_up_to_poll():
    delays = [default_poll(n) for n in range(1, 8)]
    assert delays[:5] == [0.005, 0.01, 0.02, 0.04, 0.08]
    assert delays[5:] == [POLL, POLL]


def run_check(monkeypatch, check: WebCheck, refusals: int) -> list[float]:
    """The sleeps of a check whose first ``refusals`` probes find no listener."""
    sleeps: list[float] = []
    answers = iter([ConnectionRefusedError(111, "Connection refused")] * refusals
                   + [(200, "ok")])

    def probe(host, port, check):
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(health, "probe", probe)
    monkeypatch.setattr(health.time, "sleep", sleeps.append)
    wait_healthy(INFO, check, lambda i: INFO, lambda i: "")
    return sleeps


def test_a_server_up_after_three_refusals_is_seen_after_35_ms_not_300(monkeypatch):
    sleeps = run_check(monkeypatch, WebCheck(deadline=5), 3)
    assert sleeps == [0.005, 0.01, 0.02]


def test_declared_checks_keep_their_own_wait(monkeypatch):
    sleeps = run_check(monkeypatch, WebCheck(attempts=5, wait=2.0), 2)
    assert sleeps == [2.0, 2.0]


@pytest.mark.parametrize(("status", "declared", "default"), [
    (200, True, True), (301, True, True), (399, True, True), (404, False, True),
    (499, False, True), (500, False, False), (199, False, True)])
def test_a_declared_check_needs_200_to_399_the_default_below_500(status, declared,
                                                                  default):
    """Issue 13: an app.json or CHECKS check that answers 404 must not go live (Dokku's
    ``curl --fail``, Kubernetes' httpGet); the default ``GET /`` keeps "below 500"."""
    assert WebCheck("/health", attempts=3).status_ok(status) is declared
    assert WebCheck().status_ok(status) is default
