"""The CPU priority of unauthenticated SSH work: the data plane comes first.

Until its client authenticates, a connection's threads (the one that serves it and
paramiko's transport thread, which does the key exchange and the login) run under Linux's
``SCHED_IDLE`` policy: they get a CPU only when nothing else wants it, and any other
thread that wakes up preempts them at once. So an anonymous key-exchange flood takes what
the edge's nginx workers, their backends and the authenticated sessions leave over, not a
share of it. On authentication each thread returns to the policy and nice value it had.

Leaving ``SCHED_IDLE`` (or lowering a nice value) needs root, CAP_SYS_NICE or a large
enough RLIMIT_NICE. :func:`can_restore` probes that once; where it is refused, the
threads are only niced by ``PREAUTH_NICE`` and an authenticated session keeps that nice
value (the price of running without the privilege).

Linux sets these per thread (a thread's id is a ``pid`` for ``sched_setscheduler`` and
``setpriority``); a new thread inherits both from the thread that starts it.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

# Added to the nice value of pre-auth threads where SCHED_IDLE could not be left again.
PREAUTH_NICE = 10
SCHED_IDLE = getattr(os, "SCHED_IDLE", None)  # Linux only
SCHED_OTHER = getattr(os, "SCHED_OTHER", 0)


@dataclass(frozen=True)
class Priority:
    """A thread's scheduling policy (None: not available) and nice value."""

    policy: int | None
    nice: int


def current() -> Priority:
    """The calling thread's policy and nice value."""
    policy = os.sched_getscheduler(0) if SCHED_IDLE is not None else None
    return Priority(policy, os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))


def _set_nice(value: int) -> bool:
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), max(-20, min(19, value)))
    except OSError:
        return False
    return True


def lower(idle: bool) -> Priority:
    """Put the calling thread at pre-auth priority: ``SCHED_IDLE`` if ``idle`` (and
    available), else nice + ``PREAUTH_NICE``. Returns the priority to :func:`restore`."""
    before = current()
    if idle and SCHED_IDLE is not None:
        try:
            os.sched_setscheduler(0, SCHED_IDLE, os.sched_param(0))
            return before
        except OSError:
            pass
    _set_nice(before.nice + PREAUTH_NICE)
    return before


def restore(saved: Priority) -> bool:
    """Give the calling thread the priority :func:`lower` returned; False where the
    kernel refused (no privilege to raise a priority)."""
    ok = True
    if saved.policy is not None and os.sched_getscheduler(0) != saved.policy:
        try:
            os.sched_setscheduler(0, saved.policy, os.sched_param(0))
        except OSError:
            ok = False
    return _set_nice(saved.nice) and ok


def can_restore() -> bool:
    """Whether this process may lower a thread to ``SCHED_IDLE`` and raise it back (tried
    on a throwaway thread)."""
    if SCHED_IDLE is None:
        return False
    result: list[bool] = []

    def probe() -> None:
        saved = current()
        try:
            os.sched_setscheduler(0, SCHED_IDLE, os.sched_param(0))
        except OSError:
            result.append(False)
            return
        result.append(restore(saved) and current() == saved)

    thread = threading.Thread(target=probe, name="ssh-priority-probe", daemon=True)
    thread.start()
    thread.join()
    return bool(result and result[0])
