"""Storage mounts cannot be nested or turned into symlinks to reach the host."""

from __future__ import annotations

from tests.e2e.test_push import httpd_app
from tests.harness import make_repo


def test_nested_mounts_are_refused(server):
    bob = server.add_key("bob-storage")
    assert server.ssh("apps:create", "nest", key=bob).returncode == 0
    assert server.ssh("storage:mount", "nest", "data:/data", key=bob).returncode == 0
    for spec in ("data/sub:/sub", "data:/other"):
        refused = server.ssh("storage:mount", "nest", spec, key=bob)
        assert refused.returncode == 1 and "overlaps" in refused.stderr, spec


def test_a_mount_turned_into_a_symlink_is_not_followed(server, busybox_image, tmp_path):
    repo = make_repo(tmp_path / "sym", httpd_app(busybox_image, "sym\n"))
    assert server.ssh("apps:create", "sym").returncode == 0
    assert server.ssh("storage:mount", "sym", "files:/files").returncode == 0
    assert server.push(repo, "sym").returncode == 0
    host_dir = server.data_dir / "storage" / "sym" / "files"
    host_dir.rmdir()
    host_dir.symlink_to("/")
    restart = server.ssh("ps:restart", "sym")
    assert restart.returncode != 0
    assert "no longer a plain directory" in restart.stderr
    assert server.get(server.host("sym")) == (200, "sym\n")
