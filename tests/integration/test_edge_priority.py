"""Issue 12: the edge's nginx comes before ``gitpaas serve`` for the CPU. nginx daemonizes
into a session of its own, and with autogroup scheduling Linux shares the CPU between
sessions first: the edge's group gets the workers' priority (``worker_priority``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .routerkit import make_config, running_router


def autogroup(pid: int) -> tuple[str, int] | None:
    """(group name, nice) of ``pid``'s autogroup; None for a process in no autogroup of
    its own (the kernel prints nothing for one that never left init's session, e.g. a CI
    job's process tree that never called setsid)."""
    fields = Path(f"/proc/{pid}/autogroup").read_text().split()
    if not fields:
        return None
    name, _, nice = fields
    return name, int(nice)


def test_the_edge_s_scheduling_group_gets_the_workers_priority(redis_url, instance):
    if Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() != "1":
        pytest.skip("autogroup scheduling is off in this kernel: nothing to set")
    if os.geteuid() != 0:
        pytest.skip("only root may raise a priority (the edge then sets none)")
    config = make_config(redis_url, instance)
    assert config.worker_priority == -5
    with running_router(config) as handle:
        pid = handle.edge.pid()
        assert pid is not None and os.getsid(pid) == pid  # a session (a group) of its own
        edge_group = autogroup(pid)
        assert edge_group is not None
        group, nice = edge_group
        assert nice == config.worker_priority
        own = autogroup(os.getpid())
        assert own is None or group != own[0]  # not this test's group
        workers = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        assert workers and all(autogroup(int(w)) == (group, nice) for w in workers)
        # adopting the running nginx (a restarted serve) keeps it so
        assert handle.edge.start() == pid
        assert autogroup(pid) == (group, nice)
