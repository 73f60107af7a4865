"""Issue 19: faults leave nothing behind (partial packs, first-push races, session errors).

A real ``gitpaas serve`` with the real git and OpenSSH clients.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import pytest

from tests.e2e.test_push import httpd_app
from tests.harness import commit_files, git, make_repo, serving, wait_for

pytestmark = pytest.mark.timeout(600)


def partial_files(srv, app: str) -> list[str]:
    """What an unfinished receive leaves in the app's repo."""
    objects = srv.data_dir / "repos" / f"{app}.git" / "objects"
    # dulwich writes objects/tmp_pack_*, git index-pack objects/pack/tmp_pack_*.
    found = [p.name for p in [*objects.glob("tmp_pack_*"), *objects.glob("pack/tmp_*")]]
    pack = objects / "pack"
    if pack.is_dir():
        names = {p.name for p in pack.iterdir()}
        found += [n for n in names if n.endswith(".pack") and n[:-5] + ".idx" not in names]
    return found


def start_push(srv, repo, app: str) -> subprocess.Popen:
    """``git push`` in its own process group (so the test can kill git and ssh at once)."""
    env = {**os.environ, **srv.git_env()}
    return subprocess.Popen(["git", "-C", str(repo), "push", srv.url(app), "main"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)


def big_repo(tmp_path, name: str, image: str):
    """A small app, pushed once, then a commit adding 40 MB that do not compress."""
    repo = make_repo(tmp_path / name, httpd_app(image, "v1\n"))
    commit_files(repo, {"big.bin": os.urandom(40 << 20)}, "big")
    return repo


def test_a_client_killed_mid_pack_leaves_no_partial_pack(server, busybox_image, tmp_path):
    app = "midpack"
    repo = big_repo(tmp_path, app, busybox_image)
    push = start_push(server, repo, app)
    objects = server.data_dir / "repos" / f"{app}.git" / "objects"
    def partial_size() -> int:
        return sum(p.stat().st_size for p in [*objects.glob("tmp_pack_*"),
                                               *objects.glob("pack/tmp_*")] if p.exists())

    try:
        size = wait_for(lambda: partial_size() > (1 << 20) and partial_size(), 120,
                      "1 MB of the pack to be written")
    finally:
        os.killpg(push.pid, signal.SIGKILL)
        push.wait()
    killed = time.monotonic()
    wait_for(lambda: not partial_files(server, app), 30, "the partial pack to be removed")
    print(f"client killed mid-pack: {size / 1e6:.1f} MB partial, removed"
          f" {time.monotonic() - killed:.2f} s later")
    # The app's lock is free and the next push works.
    again = server.push(repo, app)
    assert again.returncode == 0, again.stderr
    assert not partial_files(server, app)


def test_serve_killed_mid_pack_cleans_up_at_start_up(tmp_path, redis_url, docker_client,
                                                     clients, busybox_image):
    (tmp_path / "srv").mkdir()
    with serving(tmp_path / "srv", redis_url, docker_client, "k") as srv:
        app = "killed"
        repo = big_repo(tmp_path, app, busybox_image)
        push = start_push(srv, repo, app)
        try:
            left = wait_for(lambda: partial_files(srv, app), 120, "the pack to be written")
            srv.kill()
        finally:
            os.killpg(push.pid, signal.SIGKILL)
            push.wait()
        assert partial_files(srv, app), left  # SIGKILL: nothing could clean up
        srv.start()
        assert partial_files(srv, app) == []
        again = srv.push(repo, app)
        assert again.returncode == 0, again.stderr


def test_four_simultaneous_first_pushes_all_succeed(server, busybox_image, tmp_path):
    app = "firsts"
    repo = make_repo(tmp_path / app, httpd_app(busybox_image, "first\n"))
    refspecs = ["main", "main:one", "main:two", "main:three"]
    results: dict[str, subprocess.CompletedProcess] = {}

    def push(refspec: str) -> None:
        results[refspec] = git(repo, "push", server.url(app), refspec,
                               env=server.git_env(), check=False)

    threads = [threading.Thread(target=push, args=(r,)) for r in refspecs]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(f"4 simultaneous first pushes: {time.monotonic() - started:.1f} s")
    for refspec, result in results.items():
        assert result.returncode == 0, (refspec, result.stderr)
        assert "exists already" not in result.stderr
        assert "Connection closed" not in result.stderr
    remote = git(repo, "ls-remote", server.url(app), env=server.git_env()).stdout
    for branch in ("main", "one", "two", "three"):
        assert f"refs/heads/{branch}" in remote
    releases = server.ssh("releases", app)
    assert releases.returncode == 0 and "v1" in releases.stdout and "v2" not in releases.stdout
    assert server.get(server.host(app)) == (200, "first\n")
    events = server.gitpaas("events", app)
    assert events.stdout.count("apps:create") == 1, events.stdout


def test_a_session_error_reaches_the_client_as_one_line(server, busybox_image, tmp_path):
    app = "blocked"
    # Something that is not a repo sits where the app's repo goes.
    path = server.data_dir / "repos" / f"{app}.git"
    path.mkdir(parents=True)
    (path / "objects").write_text("not a directory\n")
    repo = make_repo(tmp_path / app, httpd_app(busybox_image, "x\n"))
    result = server.push(repo, app)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.startswith(" !     ")]
    assert len(lines) == 1, result.stderr
    assert "is not a git repository" in lines[0]


def stubborn_app(image: str, text: str) -> dict[str, str]:
    """An httpd that ignores SIGTERM: each stop lasts the whole ``stop_timeout``."""
    return {"Dockerfile": f"FROM {image}\nCOPY index.html /www/index.html\n"
                          'CMD ["/bin/sh", "-c", "trap \'\' TERM; exec /bin/httpd -f -p 5000'
                          ' -h /www"]\n',
            "index.html": text}


def running_releases(docker_client, srv, app: str) -> set[str]:
    label = [f"gitpaas.instance={srv.instance}", f"gitpaas.app={app}"]
    return {c["Labels"]["gitpaas.release"]  # summaries: no inspect of a container going away
            for c in docker_client.api.containers(filters={"label": label})}


@pytest.fixture
def burst_server(tmp_path, redis_url, docker_client, clients):
    """A server whose SSH limits let 50 sessions from 127.0.0.1 in at once (per source, and
    50 logging in at the same time: no MaxStartups)."""
    (tmp_path / "burst").mkdir()
    env = {"GITPAAS_SSH_MAX_CONNECTIONS_PER_SOURCE": "0", "GITPAAS_SSH_RATE_PER_SOURCE": "0",
           "GITPAAS_SSH_MAX_STARTUPS": "0"}
    with serving(tmp_path / "burst", redis_url, docker_client, "b", env) as srv:
        yield srv


def test_a_burst_of_config_changes_leaves_at_most_two_releases_running(
        burst_server, busybox_image, tmp_path, docker_client):
    from concurrent.futures import ThreadPoolExecutor

    server = burst_server
    app = "burst"
    repo = make_repo(tmp_path / app, stubborn_app(busybox_image, "burst\n"))
    assert server.push(repo, app).returncode == 0
    with ThreadPoolExecutor(50) as pool:
        results = list(pool.map(lambda i: server.ssh("config:set", app, f"N={i}"), range(50)))
    last = time.monotonic()
    assert [r.returncode for r in results] == [0] * 50, [r.stderr for r in results][:3]
    peak = 0
    while time.monotonic() < last + 10:
        peak = max(peak, len(running_releases(docker_client, server, app)))
        time.sleep(0.5)
    left = running_releases(docker_client, server, app)
    print(f"burst: 50 config:set, releases running at once at most {peak} in the 10 s after,"
          f" {len(left)} at the end")
    assert len(left) <= 2, sorted(left, key=int)
    assert "51" in left  # v1 + 50 changes: the last one is live
    assert server.get(server.host(app)) == (200, "burst\n")


def test_a_paused_container_stays_paused_and_ps_shows_it(server, busybox_image, tmp_path,
                                                         docker_client):
    app = "paused"
    repo = make_repo(tmp_path / app, httpd_app(busybox_image, "paused\n"))
    assert server.push(repo, app).returncode == 0
    name = f"{server.instance}.{app}.v1.web.1"
    container = docker_client.containers.get(name)
    container.pause()
    try:
        interval = 5.0  # the reconciler's default interval: two passes
        time.sleep(2 * interval + 1)
        container.reload()
        assert container.status == "paused"
        ps = server.ssh("ps", app)
        assert ps.returncode == 0 and "paused" in ps.stdout, ps.stdout
    finally:
        container.unpause()
    assert server.get(server.host(app)) == (200, "paused\n")


def test_every_address_printed_comes_from_the_settings(server, busybox_image, tmp_path):
    remote = f"ssh://git@paas.localhost:{server.ssh_port}/addr.git"
    url = f"http://addr.paas.localhost:{server.http_port}/"
    created = server.ssh("apps:create", "addr")
    assert created.returncode == 0, created.stderr
    assert url in created.stdout and remote in created.stdout, created.stdout
    info = server.ssh("apps:info", "addr", "--json")
    assert '"git_url": "' + remote in info.stdout and url in info.stdout, info.stdout
    helped = server.ssh("help")
    assert f"ssh -p {server.ssh_port} git@paas.localhost" in helped.stdout, helped.stdout
    repo = make_repo(tmp_path / "addr", httpd_app(busybox_image, "addr\n"))
    pushed = server.push(repo, "addr")
    assert f"addr v1 is live at {url}" in pushed.stderr, pushed.stderr
    assert "2222" not in created.stdout + info.stdout + helped.stdout
