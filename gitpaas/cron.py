"""Cron jobs from app.json (Dokku's format), run as one-off containers of the current release.

app.json::

    {"cron": [{"command": "python report.py", "schedule": "@daily"},
              {"command": "php cleanup.php", "schedule": "*/15 * * * *"}]}

Schedules are five-field cron expressions or ``@yearly``/``@annually``/``@monthly``/
``@weekly``/``@daily``/``@midnight``/``@hourly``, in UTC. ``gitpaas serve`` runs a
``CronRunner``: each job's next slot comes from the slot it last handled; a slot missed
while the server was down runs once when it is back (several missed slots: still once).
A job whose previous run still runs is not started again (no overlap). A job's output goes
to ``logs -p cron``; a failed run is an event (``cron-failed``) and a ``cron-failed`` hook.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from croniter import croniter

from .errors import GitPaasError, InvalidInput

if TYPE_CHECKING:
    from .platform import Platform
    from .store import Release

log = logging.getLogger(__name__)
ALIASES = frozenset({"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight",
                     "@hourly"})
MAX_JOBS = 20
MAX_COMMAND = 1000
TICK_SECONDS = 5.0


@dataclass(frozen=True)
class CronJob:
    """One scheduled command of an app."""

    command: str
    schedule: str

    @property
    def id(self) -> str:
        """Stable while the job's schedule and command stay the same."""
        return hashlib.sha256(f"{self.schedule}\n{self.command}".encode()).hexdigest()[:12]

    def next_after(self, when: float) -> float:
        """The first slot strictly after ``when`` (epoch seconds, UTC)."""
        return float(croniter(self.schedule, datetime.fromtimestamp(when, UTC)).get_next(float))


def check_schedule(schedule: str) -> str:
    """A five-field cron expression or an ``@`` alias, else ``InvalidInput``."""
    text = " ".join(schedule.split())
    ok = text in ALIASES or (len(text.split(" ")) == 5 and croniter.is_valid(text))
    if not ok:
        raise InvalidInput(f"app.json: cron schedule {schedule!r} does not parse (five fields,"
                           " e.g. '*/15 * * * *', or @hourly, @daily, @weekly, @monthly)")
    return text


def parse_cron(raw: object) -> list[CronJob]:
    """The ``cron`` list of app.json; ``InvalidInput`` with a one-line reason if wrong."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise InvalidInput("app.json: cron must be a list of {command, schedule} objects")
    if len(raw) > MAX_JOBS:
        raise InvalidInput(f"app.json: at most {MAX_JOBS} cron jobs")
    jobs: list[CronJob] = []
    for item in raw:
        if not isinstance(item, dict):
            raise InvalidInput("app.json: each cron job must be an object")
        command, schedule = item.get("command"), item.get("schedule")
        if not isinstance(command, str) or not command.strip():
            raise InvalidInput("app.json: each cron job needs a command")
        if len(command) > MAX_COMMAND or any(c in command for c in "\r\n\x00"):
            raise InvalidInput("app.json: a cron command is one line of at most"
                               f" {MAX_COMMAND} characters")
        if not isinstance(schedule, str):
            raise InvalidInput(f"app.json: cron job {command!r} needs a schedule")
        job = CronJob(command.strip(), check_schedule(schedule))
        if job.id in {j.id for j in jobs}:
            raise InvalidInput(f"app.json: cron job {command!r} is listed twice")
        jobs.append(job)
    return jobs


def release_jobs(extra: dict[str, Any]) -> list[CronJob]:
    """The jobs a release recorded (see ``deploy.spec_extra``)."""
    return [CronJob(j["command"], j["schedule"]) for j in extra.get("cron") or []]


class CronRunner:
    """Starts due jobs of every app's current release; one run of a job at a time."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self._running: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def tick(self, now: float | None = None) -> list[tuple[str, str]]:
        """Start every due job; returns the ``(app, job id)`` pairs started."""
        now = time.time() if now is None else now
        started = []
        store = self.platform.store
        for app in store.list_apps():
            try:
                release = store.current_release(app.name)
            except GitPaasError:
                continue
            if release is None or release.status == "stopped":
                continue
            jobs = release_jobs(release.extra)
            state = store.cron_states(app.name)
            for index, job in enumerate(jobs, 1):
                last_slot = state.get(job.id, {}).get("last_slot")
                if last_slot is None:  # first sight: from now on, no back-fill
                    store.cron_mark_slot(app.name, job, now)
                    continue
                if job.next_after(last_slot) > now:
                    continue
                store.cron_mark_slot(app.name, job, now)
                if self._start(app.name, release, job, index):
                    started.append((app.name, job.id))
        return started

    def _start(self, app: str, release: Release, job: CronJob, index: int) -> bool:
        with self._lock:
            if (app, job.id) in self._running:
                log.info("cron %s %r: the previous run still runs; slot skipped", app,
                         job.command)
                self.platform.store.record_event("cron", "cron-skipped", app,
                                                 f"{job.command} (previous run still running)")
                return False
            self._running.add((app, job.id))
        threading.Thread(target=self._run, args=(app, release, job, index), daemon=True,
                         name=f"cron-{app}-{index}").start()
        return True

    def _run(self, app: str, release: Release, job: CronJob, index: int) -> None:
        store = self.platform.store
        started = time.time()
        store.cron_started(app, job, started)
        try:
            code = self.platform.deployer.run_cron(app, release, job.command, index)
            status = "succeeded" if code == 0 else f"failed (exit {code})"
        except GitPaasError as exc:
            status = f"failed ({exc.message})"
        except Exception:  # noqa: BLE001 - a broken job must not stop the runner
            log.exception("cron job of %s failed", app)
            status = "failed (internal error)"
        duration = time.time() - started
        try:
            store.cron_finished(app, job, status, duration)
            if status != "succeeded":
                store.record_event("cron", "cron-failed", app, f"{job.command}: {status}")
                self.platform.deployer.notify("cron-failed", {
                    "app": app, "release": release.version, "command": job.command,
                    "status": status})
        except GitPaasError as exc:
            log.warning("cron %s: cannot record the run: %s", app, exc.message)
        finally:
            with self._lock:  # the run counts as running until it is recorded
                self._running.discard((app, job.id))

    def loop(self, stop: threading.Event, interval: float = TICK_SECONDS) -> None:
        """Tick until ``stop`` is set."""
        while not stop.wait(interval):
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - keep the scheduler alive
                log.exception("cron tick failed")


def start_in_thread(platform: Platform, interval: float = TICK_SECONDS) -> threading.Event:
    """Run a ``CronRunner`` on a daemon thread; set the returned event to stop it."""
    stop = threading.Event()
    runner = CronRunner(platform)
    threading.Thread(target=runner.loop, args=(stop, interval), daemon=True,
                     name="cron").start()
    return stop
