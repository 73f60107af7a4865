"""Where the pre-auth idle cpu cgroup goes (gitpaas/ssh/idlegroup.py): the hierarchy's
mount point from mountinfo, a thread's group mapped to its ``tasks`` file. The group itself
is tested against the real cgroup fs in tests/integration/test_ssh_limits.py."""

from __future__ import annotations

from pathlib import Path

from gitpaas.ssh import idlegroup

V1 = """\
25 24 0:22 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
26 25 0:23 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
27 25 0:24 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
28 25 0:25 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
V1_JOINT = """\
30 25 0:27 /docker/abc /sys/fs/cgroup/cpu,cpuacct ro,nosuid - cgroup cgroup rw,cpu,cpuacct
"""
V2 = "29 24 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"


def test_the_cpu_hierarchy_is_found_in_mountinfo(tmp_path):
    info = tmp_path / "mountinfo"
    info.write_text(V1)
    assert idlegroup.cpu_hierarchy(info) == (Path("/sys/fs/cgroup/cpu"), "/")
    info.write_text(V1_JOINT)
    assert idlegroup.cpu_hierarchy(info) == (Path("/sys/fs/cgroup/cpu,cpuacct"), "/docker/abc")
    info.write_text(V2)
    assert idlegroup.cpu_hierarchy(info) is None
    assert idlegroup.cpu_hierarchy(tmp_path / "missing") is None


def test_a_group_maps_to_its_tasks_file_under_the_mount(tmp_path):
    group = idlegroup.IdleGroup(tmp_path / "g", tmp_path, "/")
    assert group.tasks_file("/") == tmp_path / "tasks"
    assert group.tasks_file("/a/b") == tmp_path / "a" / "b" / "tasks"
    nested = idlegroup.IdleGroup(tmp_path / "g", tmp_path, "/docker/abc")
    assert nested.tasks_file("/docker/abc") == tmp_path / "tasks"
    assert nested.tasks_file("/docker/abc/x") == tmp_path / "x" / "tasks"
    assert nested.tasks_file("/docker/abcd") is None  # outside this mount's root
    assert nested.tasks_file("/") is None and nested.tasks_file(None) is None
