"""Issue 7, point 13: the data dir's file system fills up during a push.

The data dir lives on a small tmpfs (``size=``); a filler leaves less room than the next
push needs. The push fails with a clear message, the previous release keeps serving, the
state is intact, no partial pack is left behind (issue 19), and once there is room again
the same push deploys with no manual step.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.conftest import require
from tests.e2e.test_faults import partial_files
from tests.e2e.test_push import httpd_app
from tests.harness import commit_files, make_repo, serving

pytestmark = pytest.mark.timeout(600)


@pytest.fixture
def small_disk_server(tmp_path, redis_url, docker_client, clients):
    root = tmp_path / "small"
    root.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m,mode=0700", "tmpfs",
                              str(root)], capture_output=True, text=True)
    require(mounted.returncode == 0, f"a tmpfs mount (root): {mounted.stderr.strip()}")
    try:
        with serving(root, redis_url, docker_client, "d") as srv:
            yield srv
    finally:
        subprocess.run(["umount", "-l", str(root)], check=False)


def free_bytes(path) -> int:
    st = os.statvfs(path.parent)
    return st.f_bavail * st.f_frsize


def fill(path, leave: int) -> None:
    """Write zeros to ``path`` until only ``leave`` bytes are free."""
    st = os.statvfs(path.parent)
    free = st.f_bavail * st.f_frsize
    with open(path, "wb") as f:
        f.truncate(0)
        chunk = b"\0" * (1 << 20)
        remaining = max(0, free - leave)
        while remaining > 0:
            n = f.write(chunk[: min(len(chunk), remaining)])
            remaining -= n


def test_push_on_a_full_disk_fails_clearly_and_keeps_state(small_disk_server, busybox_image,
                                                           tmp_path):
    srv = small_disk_server
    repo = make_repo(tmp_path / "full", httpd_app(busybox_image, "v1\n"))
    assert srv.push(repo, "full").returncode == 0
    assert srv.get(srv.host("full")) == (200, "v1\n")
    filler = srv.root / "filler"
    fill(filler, leave=256 * 1024)
    commit_files(repo, {"index.html": "v2\n", "blob.bin": os.urandom(4 << 20)}, "big")
    result = srv.push(repo, "full")
    assert result.returncode != 0
    assert "No space left on device" in result.stderr, result.stderr[-2000:]
    assert srv.get(srv.host("full")) == (200, "v1\n")
    assert srv.proc.poll() is None, "the server died"
    releases = srv.ssh("releases", "full")
    assert releases.returncode == 0 and "v1" in releases.stdout, releases.stderr
    assert "v2" not in releases.stdout
    # The refused push left no partial pack (issue 19): the room it took is free again.
    assert partial_files(srv, "full") == []
    assert free_bytes(filler) >= 200 * 1024
    filler.unlink()
    again = srv.push(repo, "full")
    assert again.returncode == 0, again.stderr
    assert srv.get(srv.host("full")) == (200, "v2\n")
