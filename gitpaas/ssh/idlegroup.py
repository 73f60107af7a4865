"""A cpu cgroup of idle weight for the threads of unauthenticated SSH connections.

``SCHED_IDLE`` (``priority.py``) only ranks threads within one scheduling group: with
autogroup scheduling, one session. The Linux scheduler first shares the CPU between
groups, so ``gitpaas serve``'s group, where a key-exchange flood runs, still got its full
share against the edge's nginx. A cgroup with ``cpu.idle`` set (Linux 5.15) is a group
that is itself idle at its level: made at the top of the cpu hierarchy, it competes with
every other group (autogroups, docker's containers, the edge) at the smallest weight and
is preempted by any of them that wakes up. Its threads get what the machine leaves over.

cgroup v1 (the ``cpu`` controller mounted on a hierarchy of its own, as on this machine
and under docker's cgroupfs driver) lets each thread of a process sit in a cgroup of its
own: a thread moves itself by writing its id to a group's ``tasks`` file (about 50 us),
and a thread it starts is born in its group. So a connection's thread moves in at its
start, paramiko's transport thread is born there, and both move back to the group they
came from once the client has authenticated.

cgroup v2 (systemd's hosts) allows threads of one process in different cgroups only in a
threaded subtree of a delegated cgroup, and an idle group there would be idle only within
``gitpaas.service``, whose weight (``CPUWeight=20``) already bounds it: not done, the
threads stay where they are (docs/security.md).

All of it is best effort: no cpu hierarchy, no ``cpu.idle``, no permission (not root) and
the threads stay in serve's group, with one line in the log; SSH works the same.
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import re
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)

# A connection goes into the idle group only while at least this many connections (itself
# included) have not authenticated: a flood. A pre-auth thread preempted while it holds the
# interpreter lock holds it until the machine has a gap, so with busy containers a lone
# login in the group would stall the whole of serve; below this it stays in serve's group
# (under SCHED_IDLE there), where serve's own share lets it finish.
FLOOD_AT = 4

MOUNTINFO = Path("/proc/self/mountinfo")
NAME = "gitpaas-{instance}-ssh-preauth-{pid}-{n}"
_STALE = re.compile(r"gitpaas-(?P<instance>[a-z][a-z0-9]*)-ssh-preauth-(?P<pid>\d+)-\d+")
_numbers = itertools.count(1)


def cpu_hierarchy(mountinfo: Path = MOUNTINFO) -> tuple[Path, str] | None:
    """(mount point, root within the hierarchy) of the cgroup v1 hierarchy that has the
    ``cpu`` controller (alone or as ``cpu,cpuacct``); None where there is none (cgroup
    v2 only, or no cgroups)."""
    try:
        text = mountinfo.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        mine, _, fs = line.partition(" - ")
        fields, fs_fields = mine.split(), fs.split()
        if (len(fields) >= 5 and len(fs_fields) >= 3 and fs_fields[0] == "cgroup"
                and "cpu" in fs_fields[2].split(",")):
            return Path(fields[4]), fields[3]
    return None


def thread_cgroup(tid: int | None = None) -> str | None:
    """The cpu cgroup (path within the hierarchy) of thread ``tid`` of this process (the
    calling thread by default); None where no v1 hierarchy has the cpu controller."""
    tid = threading.get_native_id() if tid is None else tid
    try:
        text = Path(f"/proc/self/task/{tid}/cgroup").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        _, controllers, path = line.split(":", 2)
        if "cpu" in controllers.split(","):
            return path
    return None


class IdleGroup:
    """A cgroup with ``cpu.idle`` set, at the top of the cpu hierarchy, owned by one
    SSH server: made by :meth:`create`, removed by :meth:`close`."""

    def __init__(self, path: Path, mount: Path, root: str) -> None:
        self.path = path
        self._mount = mount
        self._root = root
        self._home = self.tasks_file(thread_cgroup())  # where close() puts what is left
        self._closed = False
        self._warned = False

    @classmethod
    def create(cls, instance: str, hierarchy: tuple[Path, str] | None = None
               ) -> IdleGroup | None:
        """Make this server's idle group; None (logged) where it cannot be had.
        ``hierarchy``: (mount point, root) of the cpu hierarchy, found by default."""
        found = hierarchy or cpu_hierarchy()
        if found is None:
            log.info("ssh: no cgroup v1 cpu hierarchy: pre-auth work stays in serve's "
                     "cgroup (under SCHED_IDLE)")
            return None
        mount, root = found
        _remove_stale(mount)
        path = mount / NAME.format(instance=instance, pid=os.getpid(), n=next(_numbers))
        try:
            path.mkdir()
        except OSError as exc:
            log.info("ssh: cannot make the pre-auth cpu cgroup %s (%s): pre-auth work stays "
                     "in serve's cgroup (under SCHED_IDLE)", path, exc.strerror or exc)
            return None
        try:
            if not (path / "tasks").is_file():
                raise OSError(errno.ENOTSUP, "not a cgroup v1 file system")
            (path / "cpu.idle").write_text("1")  # ENOENT/EACCES before Linux 5.15
        except OSError as exc:
            log.info("ssh: cannot set cpu.idle on %s (%s): pre-auth work stays in serve's "
                     "cgroup (under SCHED_IDLE)", path, exc.strerror or exc)
            _rmdir(path)
            return None
        group = cls(path, mount, root)
        if group._home is None:
            log.info("ssh: serve's own cpu cgroup is outside %s: pre-auth work stays in it",
                     mount)
            _rmdir(path)
            return None
        return group

    def tasks_file(self, cgroup: str | None) -> Path | None:
        """The ``tasks`` file of ``cgroup`` (a path within the hierarchy); None where it is
        not under this mount (another cgroup namespace)."""
        if cgroup is None:
            return None
        root = self._root.rstrip("/")
        if cgroup != root and not cgroup.startswith(root + "/"):
            return None
        return self._mount.joinpath(cgroup[len(root):].lstrip("/"), "tasks")

    def enter(self) -> Path | None:
        """Move the calling thread into the group; returns what :meth:`leave` takes (the
        ``tasks`` file of the group it was in), None if it did not move."""
        back = self.tasks_file(thread_cgroup())
        if back is None or self._closed:
            return None
        return back if self._write(self.path / "tasks") else None

    def leave(self, back: Path | None) -> None:
        """Move the calling thread back to the group :meth:`enter` took it from."""
        if back is not None:
            self._write(back)

    def tids(self) -> list[int]:
        """The threads in the group now."""
        try:
            return [int(t) for t in (self.path / "tasks").read_text().split()]
        except OSError:
            return []

    def close(self) -> None:
        """Move the threads still in the group (connections in their key exchange) back to
        serve's group, and remove it (best effort)."""
        self._closed = True
        for _ in range(50):
            for tid in self.tids():
                if self._home is not None:
                    try:
                        self._home.write_text(str(tid))
                    except OSError:  # ended meanwhile
                        pass
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:  # a thread that just ended is not yet gone
                time.sleep(0.02)
        log.warning("ssh: cannot remove the pre-auth cpu cgroup %s", self.path)

    def _write(self, tasks: Path) -> bool:
        try:
            tasks.write_text(str(threading.get_native_id()))
        except OSError as exc:
            if not (self._closed or self._warned):
                self._warned = True
                log.warning("ssh: cannot move a thread to %s: %s", tasks.parent, exc)
            return False
        return True


def _rmdir(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass


def _remove_stale(mount: Path) -> None:
    """Remove the groups that a serve which did not stop (killed) left: empty once its
    threads died (and the kernel refuses to remove one that is not)."""
    try:
        names = [p.name for p in mount.iterdir()]
    except OSError:
        return
    for name in names:
        match = _STALE.fullmatch(name)
        if match is None:
            continue
        pid = int(match["pid"])
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
            continue  # still running
        except ProcessLookupError:
            _rmdir(mount / name)
        except OSError:
            continue
