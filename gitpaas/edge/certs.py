"""Automatic HTTPS: which hosts need a certificate, getting and renewing them, ``certs``.

``gitpaas serve`` runs ``CertManager.loop`` on a thread: a pass over every app host at
start and every ``SCAN_INTERVAL`` seconds, and at once for an app named on the Redis list
``<instance>:acme-queue`` (a deploy or ``domains:add`` pushes it there, from any process).
A host gets a certificate when it has none or its certificate expired, and a new one
``RENEW_BEFORE`` (30 days) before expiry. A failure is recorded (``certs`` shows it, the
audit trail has it) and retried with backoff; it never touches the app's deploys.
Certificates installed with ``certs:add`` (source ``own``) are never replaced.
Every certificate is also copied to Redis (``edge.certsync``) for ``gitpaas router`` on
other hosts: at each install and removal, and all of them at each full pass.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import redis

from ..errors import GitPaasError, ServiceError
from .acme import AcmeIssuer, IssueError, RedisChallenges
from .certstore import CertInfo, CertStore, HostState, covers, format_time
from .certsync import CertMirror

if TYPE_CHECKING:
    from ..platform import Platform

log = logging.getLogger(__name__)

RENEW_BEFORE = 30 * 86400.0
SCAN_INTERVAL = 300.0
MIN_RETRY = 300.0        # first retry after a failure; x4 each time, at most MAX_RETRY
MAX_RETRY = 86400.0
TRIGGER_MIN_GAP = 60.0   # a deploy may retry a failed host, at most this often
ACTOR = "acme"


def certs_channel(prefix: str) -> str:
    """The pub/sub channel on which the edge hears of changed certificate files."""
    return f"{prefix}certs"


def queue_key(prefix: str) -> str:
    return f"{prefix}acme-queue"


def retry_delay(attempts: int) -> float:
    """Seconds to wait after ``attempts`` failures in a row (5 min, 20 min, 80 min ...)."""
    return min(MIN_RETRY * 4.0 ** max(attempts - 1, 0), MAX_RETRY)


def plan(host: str, state: HostState | None, info: CertInfo | None, now: float,
         triggered: bool = False) -> str | None:
    """What the host needs now: ``"issue"``, ``"renew"`` or None (pure: unit-tested)."""
    if host.startswith("*."):
        return None  # HTTP-01 cannot prove a wildcard
    if state is not None and state.source == "own":
        return None
    if info is None or info.not_after <= now or not any(covers(n, host) for n in info.names):
        need = "issue"
    elif info.not_after - now <= RENEW_BEFORE:
        need = "renew"
    else:
        return None
    if state is not None and state.status == "failed":
        not_before = state.updated + TRIGGER_MIN_GAP if triggered else state.next_try
        if now < not_before:
            return None
    return need


@dataclass(frozen=True)
class HostReport:
    """One line of ``certs``."""

    host: str
    status: str            # none, pending, valid, expired, failed
    source: str            # acme, own, "" (none)
    issuer: str
    expires: float | None
    reason: str

    def as_json(self) -> dict[str, Any]:
        return {"host": self.host, "status": self.status, "source": self.source or None,
                "issuer": self.issuer or None, "reason": self.reason or None,
                "expires": format_time(self.expires) if self.expires else None}


def describe(host: str, state: HostState | None, info: CertInfo | None, now: float,
             acme_on: bool) -> HostReport:
    """The state of one host as ``certs`` shows it."""
    source = state.source if state is not None and info is not None else ""
    issuer, expires = (info.issuer, info.not_after) if info else ("", None)
    if state is not None and state.status in ("pending", "failed"):
        status, reason = state.status, state.reason
        if state.status == "failed" and info is not None and info.not_after > now:
            reason += f" (still serving the certificate valid until {format_time(info.not_after)})"
    elif info is not None:
        status = "valid" if info.not_after > now else "expired"
        reason = ""
        if status == "valid" and info.not_after - now <= RENEW_BEFORE and source == "own":
            reason = "expires soon: install a new one with certs:add"
    else:
        status = "none"
        if host.startswith("*."):
            reason = "a wildcard needs DNS-01: install one with certs:add"
        elif not acme_on:
            reason = "automatic HTTPS is off (setting acme_directory)"
        else:
            reason = "waiting for the next pass"
    return HostReport(host, status, source, issuer, expires, reason)


class RedisSignals:
    """Publishes changed certificate hosts to the edge; queues apps for the next pass."""

    def __init__(self, redis_url: str, prefix: str) -> None:
        self.prefix = prefix
        self._redis = redis.Redis.from_url(redis_url, socket_timeout=5,
                                           socket_connect_timeout=5, decode_responses=True)

    def publish(self, host: str) -> None:
        try:
            self._redis.publish(certs_channel(self.prefix), host)
        except redis.RedisError as exc:
            log.warning("cannot publish certificate change of %s: %s", host, exc)

    def request(self, app: str) -> None:
        try:
            self._redis.rpush(queue_key(self.prefix), app)
        except redis.RedisError as exc:
            log.warning("cannot queue certificates of %s: %s", app, exc)

    def next_request(self, timeout: float) -> str | None:
        """An app waiting for a pass, or None after ``timeout`` seconds."""
        try:
            item = self._redis.blpop([queue_key(self.prefix)], timeout=max(1, int(timeout)))
        except redis.TimeoutError:
            return None
        except redis.RedisError as exc:
            log.warning("certificate queue unavailable: %s", exc)
            time.sleep(min(timeout, 5))
            return None
        return cast(str, item[1]) if item else None  # decode_responses: str, never bytes


class CertManager:
    """Gets, renews, installs and removes the certificates of every app host."""

    def __init__(self, platform: Platform, clock: Callable[[], float] = time.time,
                 issuer: AcmeIssuer | None = None, signals: RedisSignals | None = None,
                 mirror: CertMirror | None = None) -> None:
        s = platform.settings
        self.platform = platform
        self.clock = clock
        if signals is None:  # the real Redis: certificates are copied there too
            signals = RedisSignals(s.redis_url, s.routes_prefix)
            mirror = mirror or CertMirror(s.redis_url, s.routes_prefix)
        self.signals = signals
        self.store = CertStore(s.data_dir, self.signals.publish, mirror)
        if issuer is None and s.acme_directory:
            issuer = AcmeIssuer(s.acme_directory, s.data_dir / "edge" / "acme" / "account.key",
                                RedisChallenges(s.redis_url, s.routes_prefix),
                                email=s.acme_email, ca_bundle=s.acme_ca_bundle)
        self.issuer = issuer
        self._lock = threading.Lock()

    # -- what commands call -------------------------------------------------------------

    def hosts(self, app: str) -> list[str]:
        return self.platform.hosts(app)

    def report(self, app: str) -> list[HostReport]:
        """Each host of ``app`` and its certificate."""
        now = self.clock()
        reports = []
        for host in self.hosts(app):
            report = describe(host, self.store.state(host), self.store.info(host), now,
                              self.issuer is not None)
            wildcard = "*." + host.partition(".")[2]
            if report.status == "none" and not host.startswith("*."):
                info = self.store.info(wildcard)
                if info is not None and info.not_after > now:
                    report = HostReport(host, "none", "", info.issuer, info.not_after,
                                        f"the edge serves {wildcard} meanwhile")
            reports.append(report)
        return reports

    def request(self, app: str) -> None:
        """Ask ``gitpaas serve`` for a pass over ``app`` now (never raises)."""
        if self.issuer is not None:
            self.signals.request(app)

    def forget(self, hosts: Iterable[str]) -> None:
        """Remove the certificates of hosts an app no longer has (never raises)."""
        for host in hosts:
            try:
                self.store.remove(host)
            except (OSError, GitPaasError) as exc:
                log.warning("cannot remove the certificate of %s: %s", host, exc)

    # -- the passes ---------------------------------------------------------------------

    def owners(self) -> dict[str, str]:
        """Every host of every app with a release, and its app."""
        store = self.platform.store
        return {h: a.name for a in store.list_apps() if a.current_version is not None
                for h in self.hosts(a.name)}

    def run_once(self, only_app: str | None = None) -> list[tuple[str, str]]:
        """One pass (all apps, or one app as triggered): returns (host, outcome) pairs."""
        with self._lock:
            done: list[tuple[str, str]] = []
            if only_app is None:
                self._remove_strays()
                self.store.mirror_all()  # for edges on other hosts (edge.certsync)
                targets = self.owners()
            else:
                targets = {h: only_app for h in self.hosts(only_app)}
            if self.issuer is None:
                return done
            for host, app in sorted(targets.items()):
                state, info = self.store.state(host), self.store.info(host)
                if state is not None and state.app != app:
                    state = None  # the host changed hands: its old state is not this app's
                need = plan(host, state, info, self.clock(), triggered=only_app is not None)
                if need is not None:
                    done.append((host, self._obtain(app, host, need, state)))
            return done

    def _obtain(self, app: str, host: str, need: str, state: HostState | None) -> str:
        attempts = state.attempts if state is not None and state.status == "failed" else 0
        self.store.save_state(host, HostState(app=app, status="pending", attempts=attempts,
                                              reason=f"{need} under way",
                                              updated=self.clock()))
        assert self.issuer is not None
        reason = ""
        try:
            issued = self.issuer.issue(host)
        except IssueError as exc:
            reason = str(exc)
        except Exception as exc:  # noqa: BLE001 - recorded as a failure, never stuck pending
            log.exception("certificate for %s", host)
            reason = f"internal error ({type(exc).__name__}); the server log has the details"
        if reason:
            attempts += 1
            self.store.save_state(host, HostState(
                app=app, status="failed", reason=reason, attempts=attempts,
                next_try=self.clock() + retry_delay(attempts), updated=self.clock()))
            self._event(app, "certs:failed", f"{host}: {reason}")
            log.warning("certificate for %s failed: %s", host, reason)
            return "failed"
        latest = self.store.state(host)
        if latest is not None and latest.source == "own":
            return "kept own"  # certs:add ran meanwhile: theirs wins
        self.store.install(host, issued.chain_pem, issued.key_pem,
                           HostState(app=app, status="valid", updated=self.clock()))
        info = self.store.info(host)
        expires = format_time(info.not_after) if info else "?"
        self._event(app, "certs:renewed" if need == "renew" else "certs:issued",
                    f"{host} until {expires}")
        return need

    def _remove_strays(self) -> None:
        """Certificates gitpaas installed for hosts no app has any more (a removed domain
        or app), or that changed hands. Files an admin put there by hand (no state file,
        e.g. a platform wildcard) are left alone."""
        store = self.platform.store
        owned = {h: a.name for a in store.list_apps() for h in self.hosts(a.name)}
        for host in self.store.managed_hosts():
            state = self.store.state(host)
            if state is None:
                continue
            if owned.get(host) != state.app:
                log.info("removing the certificate of %s (no longer %s's)", host, state.app)
                self.store.remove(host)

    def _event(self, app: str, action: str, detail: str) -> None:
        try:
            self.platform.store.record_event(ACTOR, action, app, detail)
        except GitPaasError as exc:
            log.warning("cannot record %s for %s: %s", action, app, exc.message)

    def loop(self, stop: threading.Event, scan_interval: float = SCAN_INTERVAL) -> None:
        """Passes until ``stop``: all apps now and every ``scan_interval``; queued apps
        at once."""
        next_scan = 0.0
        while not stop.is_set():
            try:
                if time.monotonic() >= next_scan:
                    next_scan = time.monotonic() + scan_interval
                    self.run_once()
                app = self.signals.next_request(min(5.0, max(next_scan - time.monotonic(), 1)))
                if app and not stop.is_set():
                    self.run_once(app)
            except (GitPaasError, ServiceError) as exc:
                log.warning("certificate pass failed: %s", exc.message)
                stop.wait(5)
            except Exception:  # noqa: BLE001 - the loop must outlive one bad pass
                log.exception("certificate pass failed")
                stop.wait(5)


def start_in_thread(platform: Platform) -> tuple[CertManager, threading.Event]:
    """Run ``CertManager.loop`` on a daemon thread; set the event to stop it."""
    manager = platform.certs
    stop = threading.Event()
    threading.Thread(target=manager.loop, args=(stop,), daemon=True, name="certs").start()
    return manager, stop
