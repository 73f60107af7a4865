"""Cron schedules of app.json and the runner's rules (a real SQLite store, a fake deployer
that records the jobs it was asked to run)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from gitpaas import settings as settings_mod
from gitpaas.appjson import parse_app_json
from gitpaas.cron import CronJob, CronRunner, parse_cron
from gitpaas.errors import InvalidInput
from gitpaas.platform import Platform


def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_schedules_five_fields_and_aliases():
    jobs = parse_cron([{"command": "python report.py", "schedule": "@daily"},
                       {"command": "php x.php", "schedule": "*/15  *  * * 1-5"}])
    assert [j.schedule for j in jobs] == ["@daily", "*/15 * * * 1-5"]
    assert jobs[0].next_after(ts("2026-11-30T13:05:00")) == ts("2026-12-01T00:00:00")
    assert jobs[1].next_after(ts("2026-11-30T13:05:00")) == ts("2026-11-30T13:15:00")


@pytest.mark.parametrize("raw, reason", [
    ({"cron": [{"command": "x", "schedule": "61 * * * *"}]}, "does not parse"),
    ({"cron": [{"command": "x", "schedule": "* * * * * *"}]}, "does not parse"),  # seconds
    ({"cron": [{"command": "x", "schedule": "@reboot"}]}, "does not parse"),
    ({"cron": [{"command": "x", "schedule": "tomorrow"}]}, "does not parse"),
    ({"cron": [{"command": "x"}]}, "needs a schedule"),
    ({"cron": [{"schedule": "@daily"}]}, "needs a command"),
    ({"cron": [{"command": "a\nb", "schedule": "@daily"}]}, "one line"),
    ({"cron": {"command": "x"}}, "must be a list"),
    ({"cron": [{"command": "x", "schedule": "@daily"}] * 2}, "listed twice"),
])
def test_a_bad_cron_entry_is_one_line_reason(raw, reason):
    import json

    with pytest.raises(InvalidInput, match=reason) as info:
        parse_app_json(json.dumps(raw))
    assert "\n" not in info.value.message


class FakeDeployer:
    def __init__(self, code=0):
        self.code = code
        self.runs: list[str] = []
        self.notified: list[tuple[str, dict]] = []
        self.release_gate = threading.Event()
        self.release_gate.set()

    def run_cron(self, app, release, command, index):
        self.runs.append(command)
        self.release_gate.wait(10)
        return self.code

    def notify(self, event, payload):
        self.notified.append((event, payload))


@pytest.fixture
def platform(tmp_path):
    p = Platform(settings_mod.load({"data_dir": tmp_path / "data", "instance": "cron"},
                                   environ={}))
    p.__dict__["deployer"] = FakeDeployer()
    store = p.store
    store.create_app("shop", "alice", "main")
    release = store.add_release("shop", "img", "c" * 40, {}, {}, "d", "alice",
                                extra={"cron": [{"command": "echo hi",
                                                 "schedule": "*/5 * * * *"}]})
    store.activate_release("shop", release.version)
    return p


def wait_idle(runner):
    for _ in range(100):
        if not runner._running:
            return
        threading.Event().wait(0.05)


def test_first_sight_runs_nothing_then_each_slot_once(platform):
    runner = CronRunner(platform)
    deployer = platform.deployer
    assert runner.tick(ts("2026-11-30T10:01:00")) == []  # first sight: no back-fill
    assert runner.tick(ts("2026-11-30T10:04:59")) == []
    assert len(runner.tick(ts("2026-11-30T10:05:01"))) == 1
    wait_idle(runner)
    assert runner.tick(ts("2026-11-30T10:06:00")) == []  # that slot is done
    # Down for an hour: the missed slots run once, not twelve times.
    assert len(runner.tick(ts("2026-11-30T11:07:00"))) == 1
    wait_idle(runner)
    assert deployer.runs == ["echo hi", "echo hi"]
    job = CronJob("echo hi", "*/5 * * * *")
    assert platform.store.cron_states("shop")[job.id]["last_status"] == "succeeded"


def test_a_job_never_overlaps_itself(platform):
    runner = CronRunner(platform)
    deployer = platform.deployer
    deployer.release_gate.clear()  # the first run hangs
    runner.tick(ts("2026-11-30T10:01:00"))
    assert len(runner.tick(ts("2026-11-30T10:05:00"))) == 1
    assert runner.tick(ts("2026-11-30T10:10:00")) == []  # still running: skipped
    deployer.release_gate.set()
    wait_idle(runner)
    assert deployer.runs == ["echo hi"]
    assert any(e[2] == "cron-skipped" for e in platform.store.events("shop"))


def test_a_failed_run_is_an_event_and_a_notification(platform):
    platform.deployer.code = 3
    runner = CronRunner(platform)
    runner.tick(ts("2026-11-30T10:01:00"))
    runner.tick(ts("2026-11-30T10:05:00"))
    wait_idle(runner)
    events = [(e[2], e[4]) for e in platform.store.events("shop")]
    assert ("cron-failed", "echo hi: failed (exit 3)") in events
    assert platform.deployer.notified[0][0] == "cron-failed"


def test_a_stopped_app_runs_no_job(platform):
    platform.store.set_release_status("shop", 1, "stopped")
    runner = CronRunner(platform)
    runner.tick(ts("2026-11-30T10:01:00"))
    assert runner.tick(ts("2026-11-30T10:05:00")) == []
