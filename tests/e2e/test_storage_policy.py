"""Tenant storage is a Docker volume mounted by name: no race can bind a host path.

Issue 11, finding 1: a container swapped a directory of its own storage with a symlink to
the gitpaas data dir (renameat2 RENAME_EXCHANGE in a loop) while its tenant mounted that
directory elsewhere and restarted until Docker followed the symlink: the new container
read ``secret.key`` and wrote into the data dir.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import time

import pytest

from tests.conftest import require
from tests.e2e.test_push import httpd_app
from tests.harness import make_repo, serving

RACER_C = r"""
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif
/* racer DIR TARGET: swap DIR/x (a directory) and DIR/l (a symlink to TARGET), 120 s. */
int main(int argc, char **argv) {
    char x[4096], l[4096];
    struct stat st;
    if (argc != 3) return 2;
    snprintf(x, sizeof x, "%s/x", argv[1]);
    snprintf(l, sizeof l, "%s/l", argv[1]);
    if (lstat(x, &st) == 0 && S_ISLNK(st.st_mode)) unlink(x);
    mkdir(x, 0755);
    unlink(l);
    if (symlink(argv[2], l) != 0) return 1;
    time_t end = time(NULL) + 120;
    for (unsigned long i = 0;; i++) {
        syscall(SYS_renameat2, AT_FDCWD, x, AT_FDCWD, l, RENAME_EXCHANGE);
        if ((i & 1023) == 0 && time(NULL) > end) return 0;
    }
}
"""

WEB = ("web: if [ -d /data ]; then /racer /data \"$TARGET\" & fi;"
       " if [ -e /y/secret.key ]; then echo pwned > /y/pwned; echo PWNED > /www/index.html;"
       " fi; exec httpd -f -p $PORT -h /www\n")


@pytest.fixture(scope="module")
def server(tmp_path_factory, redis_url, docker_client, clients):
    """A server whose admins may bind host directories inside ``<root>/roots``."""
    root = tmp_path_factory.mktemp("storage")
    (root / "roots").mkdir()
    with serving(root, redis_url, docker_client, "st",
                 {"GITPAAS_STORAGE_ROOTS": str(root / "roots")}) as srv:
        yield srv


def racer_binary(directory) -> bytes:
    require(shutil.which("gcc") is not None, "gcc (Debian packages gcc, libc6-dev)")
    source, binary = directory / "racer.c", directory / "racer"
    source.write_text(RACER_C)
    subprocess.run(["gcc", "-static", "-O2", "-o", str(binary), str(source)], check=True)
    return binary.read_bytes()


def test_a_racing_container_never_gets_the_host(server, busybox_image, tmp_path,
                                                docker_client):
    bob = server.add_key("bob-race")
    files = {**httpd_app(busybox_image, "race\n"), "racer": racer_binary(tmp_path),
             "Procfile": WEB}
    files["Dockerfile"] += "COPY racer /racer\nRUN chmod 755 /racer\n"
    repo = make_repo(tmp_path / "race", files)

    def ssh(*args: str):
        return server.ssh(*args, key=bob)

    assert ssh("apps:create", "race").returncode == 0
    assert ssh("config:set", "race", f"TARGET={server.data_dir}").returncode == 0
    assert ssh("storage:mount", "race", "a:/data").returncode == 0
    assert server.push(repo, "race", key=bob).returncode == 0
    pwned = server.data_dir / "pwned"
    refusals = []
    deadline = time.monotonic() + 240
    for _ in range(8):  # each round: a racer under /data, then restarts with a/x at /y
        if time.monotonic() > deadline or pwned.exists():
            break
        ssh("storage:mount", "race", "a:/data")
        ssh("ps:restart", "race")  # the racer runs
        ssh("storage:unmount", "race", "a:/data")
        inner = server.data_dir / "storage" / "race" / "a" / "x"
        for spec in ("a/x:/y", f"{inner}:/y"):
            mounted = ssh("storage:mount", "race", spec)
            if mounted.returncode == 0:
                break
            refusals.append(mounted.stderr)
        else:
            break  # nothing to race with: every way to name a/x is refused
        for _ in range(4):  # a refused restart keeps the racer alive: try again
            if ssh("ps:restart", "race").returncode == 0 or pwned.exists():
                break
        ssh("storage:unmount", "race", spec)
    assert not pwned.exists(), "a tenant's container wrote into the gitpaas data dir"
    assert server.get(server.host("race"))[1] != "PWNED\n"
    assert len(refusals) >= 2
    assert any("invalid storage name 'a/x'" in r for r in refusals), refusals
    assert any("only an admin may bind a host directory" in r for r in refusals), refusals
    # The racer did race: inside the app's own volume, where it reaches nothing else.
    volumes = [v.name for v in docker_client.volumes.list(
        filters={"label": f"gitpaas.instance={server.instance}"})]
    assert f"{server.instance}.race.a" in volumes
    assert ssh("apps:destroy", "race", "--confirm", "race").returncode == 0


def test_storage_is_a_volume_by_name_and_apps_destroy_removes_it(server, busybox_image,
                                                                tmp_path, docker_client):
    bob = server.add_key("bob-vol")
    files = httpd_app(busybox_image, "vol\n")
    files["Procfile"] = "web: date +%N >> /www/data/boots; exec httpd -f -p $PORT -h /www\n"
    repo = make_repo(tmp_path / "vol", files)
    assert server.ssh("apps:create", "vol", key=bob).returncode == 0
    for spec, error in (("data/sub:/x", "invalid storage name"), ("..:/x", "invalid storage"),
                        ("/etc:/x", "only an admin"), ("d:/proc/x", "cannot mount over")):
        refused = server.ssh("storage:mount", "vol", spec, key=bob)
        assert refused.returncode == 1 and error in refused.stderr, (spec, refused.stderr)
    assert server.ssh("storage:mount", "vol", "data:/www/data", key=bob).returncode == 0
    nested = server.ssh("storage:mount", "vol", "other:/www/data/in", key=bob)
    assert nested.returncode == 1 and "overlaps" in nested.stderr
    listed = server.ssh("storage", "vol", "--json", key=bob).stdout
    assert f'"volume": "{server.instance}.vol.data"' in listed
    assert server.push(repo, "vol", key=bob).returncode == 0
    assert server.ssh("ps:restart", "vol", key=bob).returncode == 0
    status, body = server.get(server.host("vol"), "/data/boots")
    assert status == 200 and len(body.split()) == 2
    volume = docker_client.volumes.get(f"{server.instance}.vol.data")
    assert volume.attrs["Labels"]["gitpaas.app"] == "vol"
    assert not (server.data_dir / "storage" / "vol").exists()
    assert server.ssh("storage:unmount", "vol", "data:/www/data", key=bob).returncode == 0
    assert server.ssh("apps:destroy", "vol", "--confirm", "vol", key=bob).returncode == 0
    assert not docker_client.volumes.list(
        filters={"label": [f"gitpaas.instance={server.instance}", "gitpaas.app=vol"]})


def test_admin_binds_stay_admin_only_and_are_never_followed(server, busybox_image,
                                                            tmp_path):
    roots = server.root / "roots"
    (roots / "files").mkdir()
    (roots / "files" / "index.html").write_text("bound\n")
    repo = make_repo(tmp_path / "bind", httpd_app(busybox_image, "bind\n"))
    assert server.ssh("apps:create", "bind").returncode == 0
    outside = server.ssh("storage:mount", "bind", f"{server.data_dir}:/www")
    assert outside.returncode == 1 and "outside the storage_roots" in outside.stderr
    assert server.ssh("storage:mount", "bind", f"{roots / 'files'}:/www").returncode == 0
    assert server.push(repo, "bind").returncode == 0
    assert server.get(server.host("bind")) == (200, "bound\n")
    (roots / "files").rename(roots / "moved")  # the running container keeps its bind
    (roots / "files").symlink_to("/")
    restart = server.ssh("ps:restart", "bind")
    assert restart.returncode != 0 and "no longer a plain directory" in restart.stderr
    assert server.get(server.host("bind")) == (200, "bound\n")
    assert server.ssh("apps:destroy", "bind", "--confirm", "bind").returncode == 0


def test_a_legacy_storage_directory_moves_into_its_volume(server, busybox_image, tmp_path,
                                                          docker_client):
    """Rows made before volumes name ``<data_dir>/storage/<app>/<dir>``: the next start
    copies the directory into the volume of the same name (symlinks stay symlinks)."""
    repo = make_repo(tmp_path / "old", httpd_app(busybox_image, "old\n"))
    assert server.ssh("apps:create", "old").returncode == 0
    legacy = server.data_dir / "storage" / "old" / "media"
    legacy.mkdir(parents=True)
    (legacy / "kept.txt").write_text("from before\n")
    (legacy / "escape").symlink_to(server.data_dir)
    with sqlite3.connect(server.data_dir / "state.db") as db:
        db.execute("INSERT INTO gp_mounts (app, container_path, host_path) VALUES (?, ?, ?)",
                   ("old", "/www/media", str(legacy)))
    assert server.push(repo, "old").returncode == 0
    assert server.get(server.host("old"), "/media/kept.txt") == (200, "from before\n")
    assert server.get(server.host("old"), "/media/escape/secret.key")[0] == 404
    assert server.ssh("storage", "old").stdout.splitlines()[1] == "media:/www/media"
    assert docker_client.volumes.get(f"{server.instance}.old.media")
    assert server.ssh("apps:destroy", "old", "--confirm", "old").returncode == 0
    assert not legacy.exists()
