"""Drive a real ``gitpaas serve`` with the real OpenSSH and git clients."""

from __future__ import annotations

import contextlib
import http.client
import importlib
import importlib.util
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

VENV_BIN = Path(sys.executable).parent
GITPAAS = str(VENV_BIN / "gitpaas")
T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float = 20.0, what: str = "",
             interval: float = 0.1) -> T:
    """Poll ``predicate`` until it returns something true and return that; after
    ``timeout`` seconds fail the test (``what``: what it waited for, for the message)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for "
                                 f"{what or getattr(predicate, '__name__', 'a condition')}")
        time.sleep(interval)


def _has_router() -> bool:
    """Whether this checkout has the edge (else ``serve --no-router``)."""
    return importlib.util.find_spec("gitpaas.edge") is not None


HAS_ROUTER = _has_router()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_key(directory: Path, name: str) -> Path:
    """An ed25519 key pair made with ssh-keygen; returns the private key's path."""
    path = directory / f"id_{name}"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f",
                    str(path)], check=True)
    return path


def make_repo(directory: Path, files: dict[str, str | bytes], branch: str = "main") -> Path:
    """A git work tree holding ``files``, committed on ``branch``."""
    directory.mkdir(parents=True, exist_ok=True)
    git(directory, "init", "-q", "-b", branch)
    commit_files(directory, files, "initial")
    return directory


def commit_files(directory: Path, files: dict[str, str | bytes], message: str) -> None:
    for name, content in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    git(directory, "add", "-A")
    git(directory, "commit", "-q", "-m", message)


def git(directory: Path, *args: str, env: dict | None = None,
        check: bool = True) -> subprocess.CompletedProcess:
    base = {**os.environ, "GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "t@example.com",
            "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "t@example.com"}
    return subprocess.run(["git", "-C", str(directory), *args], capture_output=True,
                          text=True, env={**base, **(env or {})}, check=check, timeout=600)


@dataclass
class Server:
    """One ``gitpaas serve`` process with its own data dir, instance and ports."""

    root: Path
    instance: str
    redis_url: str
    extra_env: dict[str, str] = field(default_factory=dict)
    ssh_port: int = 0
    http_port: int = 0
    proc: subprocess.Popen | None = None
    admin_key: Path | None = None
    # False: ``serve --no-router`` (run a separate ``gitpaas router`` on http_port).
    router: bool = True
    # The command to start instead of ``gitpaas serve`` (e.g. a systemd unit's ExecStart).
    command: list[str] | None = None

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def network_of(self, app: str) -> str:
        """The app's Docker network: the spare it claimed (``gp_app_networks`` in the
        server's SQLite store), else ``<instance>.<app>``."""
        with contextlib.closing(sqlite3.connect(self.data_dir / "state.db")) as db:
            row = db.execute("SELECT n.network FROM gp_app_networks n JOIN gp_apps a"
                             " ON a.uid = n.app_uid WHERE a.name = ?", (app,)).fetchone()
        return row[0] if row else f"{self.instance}.{app}"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "GITPAAS_DATA_DIR": str(self.data_dir),
                "GITPAAS_INSTANCE": self.instance, "GITPAAS_REDIS_URL": self.redis_url,
                "GITPAAS_SSH_LISTEN": f"127.0.0.1:{self.ssh_port}",
                "GITPAAS_HTTP_LISTEN": f"127.0.0.1:{self.http_port}",
                "GITPAAS_DRAIN_SECONDS": "0.2", "GITPAAS_STOP_TIMEOUT": "2",
                # the tests' local busybox images (conftest.busybox_image) as FROM
                "GITPAAS_BUILD_ALLOWED_IMAGES": "gitpaas-test-*",
                **self.extra_env}

    def start(self) -> Server:
        self.ssh_port, self.http_port = self.ssh_port or free_port(), self.http_port or free_port()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.root / "serve.log", "ab")  # noqa: SIM115 - closed with the process
        with_router = HAS_ROUTER and self.router
        args = [GITPAAS, "serve"] + ([] if with_router else ["--no-router"])
        if self.command:
            args, with_router = list(self.command), "--no-router" not in self.command
        self.proc = subprocess.Popen(args, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gitpaas serve exited: {self.log()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.ssh_port), 0.2).close()
                if with_router:
                    socket.create_connection(("127.0.0.1", self.http_port), 0.2).close()
                return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"gitpaas serve did not listen: {self.log()[-2000:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def stop_edge(self) -> None:
        """``gitpaas edge:stop``: the edge's nginx outlives ``serve`` until told."""
        if (self.data_dir / "edge" / "nginx.pid").exists():
            self.gitpaas("edge:stop", "--fast")

    def kill(self) -> None:
        """SIGKILL the server (no clean-up of any kind), and reap it."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def log(self) -> str:
        path = self.root / "serve.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # -- clients ------------------------------------------------------------------------

    def gitpaas(self, *args: str, input: str | None = None,
                check: bool = False) -> subprocess.CompletedProcess:
        """The local admin CLI against this server's data dir."""
        return subprocess.run([GITPAAS, *args], env=self.env, capture_output=True, text=True,
                              input=input, check=check, timeout=600)

    def add_key(self, name: str) -> Path:
        key = make_key(self.root, name)
        result = self.gitpaas("keys:add", name, f"{key}.pub")
        assert result.returncode == 0, result.stderr
        return key

    def ssh_command(self, key: Path | None = None) -> list[str]:
        return ["ssh", "-p", str(self.ssh_port), "-i", str(key or self.admin_key),
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR", "-o", "BatchMode=yes",
                "-o", "PasswordAuthentication=no"]

    def ssh(self, *args: str, key: Path | None = None, input: str | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess:
        """``ssh -p PORT git@127.0.0.1 ARGS...`` with the real OpenSSH client."""
        return subprocess.run([*self.ssh_command(key), "git@127.0.0.1", *args],
                              capture_output=True, text=True, input=input, timeout=timeout)

    def git_env(self, key: Path | None = None) -> dict[str, str]:
        return {"GIT_SSH_COMMAND": " ".join(self.ssh_command(key))}

    def url(self, app: str) -> str:
        return f"ssh://git@127.0.0.1:{self.ssh_port}/{app}.git"

    def push(self, repo: Path, app: str, refspec: str = "main", key: Path | None = None,
             *extra: str) -> subprocess.CompletedProcess:
        """``git push URL refspec`` with the real git client; never raises."""
        return git(repo, "push", *extra, self.url(app), refspec, env=self.git_env(key),
                   check=False)

    def get(self, host: str, path: str = "/", timeout: float = 10) -> tuple[int, str]:
        """GET through the router with the given Host header."""
        conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=timeout)
        try:
            conn.request("GET", path, headers={"Host": host})
            resp = conn.getresponse()
            return resp.status, resp.read().decode("utf-8", "replace")
        finally:
            conn.close()

    def host(self, app: str) -> str:
        return f"{app}.paas.localhost"

    # -- cleanup ------------------------------------------------------------------------

    def cleanup(self, docker_client) -> None:
        """Remove every container and image this instance made, and its data dir."""
        self.stop()
        self.stop_edge()
        for label in (f"gitpaas.instance={self.instance}",
                      f"gitpaas.datastore.instance={self.instance}",
                      f"gitpaas.volume-job={self.instance}"):
            for c in docker_client.containers.list(all=True, filters={"label": label}):
                c.remove(force=True)
        for label in (f"gitpaas.instance={self.instance}",
                      f"gitpaas.datastore.instance={self.instance}"):
            for v in docker_client.volumes.list(filters={"label": label}):
                v.remove(force=True)
        # Summaries, not inspects: another run's image removed meanwhile is no error.
        for image in docker_client.api.images():
            tags = image.get("RepoTags") or []
            if any(t.startswith(f"{self.instance}/") for t in tags):
                for tag in tags:
                    try:
                        docker_client.images.remove(tag, force=True)
                    except Exception:  # noqa: BLE001
                        pass
        from gitpaas.build.sandbox import remove_instance_networks

        remove_instance_networks(docker_client, self.instance)
        shutil.rmtree(self.root / "data", ignore_errors=True)
        self.remove_redis_keys()

    def remove_redis_keys(self) -> None:
        """Delete the instance's Redis keys (routes, dead marks, the edge's state)."""
        import redis

        client = redis.Redis.from_url(self.redis_url)
        try:
            for key in client.scan_iter(match=f"{self.instance}:*", count=1000):
                client.delete(key)
        finally:
            client.close()


def remove_image_tree(docker_client, name: str) -> None:
    """Remove the image ``name`` and every image built on it, tagged or not (children
    first). A forced removal of a tag only untags an image that has children or a
    container, which left untagged images behind: a built image is found here by its
    parent chain, which needs no tag or label."""
    try:
        root = docker_client.api.inspect_image(name)["Id"]
    except Exception:  # noqa: BLE001 - gone already
        return
    parents = {i["Id"]: i.get("ParentId") or "" for i in docker_client.api.images(all=True)}
    tree = {}  # image -> its steps from ``root``
    for image in parents:
        steps, cur = 0, image
        while cur and cur != root:
            cur, steps = parents.get(cur, ""), steps + 1
        if cur == root:
            tree[image] = steps
    for image in sorted(tree, key=tree.__getitem__, reverse=True):
        with contextlib.suppress(Exception):
            docker_client.api.remove_image(image, force=True, noprune=False)


@contextlib.contextmanager
def serving(root: Path, redis_url: str, docker_client, prefix: str = "e",
            extra_env: dict[str, str] | None = None) -> Iterator[Server]:
    """A started server with an admin key; afterwards its containers, images, data dir
    and Redis keys are removed."""
    from tests.conftest import unique

    srv = Server(root=root, instance=unique(prefix), redis_url=redis_url,
                 extra_env=dict(extra_env or {}))
    try:
        srv.admin_key = srv.add_key("admin")
        srv.start()
        yield srv
    finally:
        srv.cleanup(docker_client)
