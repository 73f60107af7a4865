"""Git receive: a generated repo (about 50 MB, 5,000 files, 200 commits) pushed to a
non-deploy branch of gitpaas, against the same push to a bare repo through a throwaway
OpenSSH sshd with the native git-receive-pack; then one small commit on top."""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from .common import (
    CACHE_DIR,
    Table,
    docker_client,
    median,
    pack_stages,
    platform,
    receive_times,
    secs,
)

TARGET = 1.1  # x native (issue 17)

COMMITS, FILES, MEAN_SIZE, SEED = 200, 5000, 10_000, 8
REPO_VERSION = f"v1-{COMMITS}-{FILES}-{MEAN_SIZE}-{SEED}"
SSHD = "/usr/sbin/sshd"
# The ssh client's options, for both servers.
SSH_OPTS = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR", "-o", "BatchMode=yes",
            "-o", "PasswordAuthentication=no"]


def fast_import_stream(out) -> None:  # noqa: ANN001 - a binary file
    """Write a deterministic ``git fast-import`` stream: ``main`` with COMMITS commits
    adding FILES files of random bytes (and touching a few older ones, for deltas), and
    ``small``: one small commit on top of ``main``."""
    rng = random.Random(SEED)
    per_commit = FILES // COMMITS
    contents: dict[str, bytes] = {}
    mark = 0

    def blob(data: bytes) -> int:
        nonlocal mark
        mark += 1
        out.write(b"blob\nmark :%d\ndata %d\n" % (mark, len(data)) + data + b"\n")
        return mark

    def commit(ref: bytes, n: int, changes: dict[str, bytes], parent: bytes | None) -> None:
        marks = {path: blob(data) for path, data in changes.items()}
        message = b"commit %d\n" % n
        stamp = 1_700_000_000 + n * 60
        out.write(b"commit %s\ncommitter Bench <bench@example.com> %d +0000\n" % (ref, stamp))
        out.write(b"data %d\n%s" % (len(message), message))
        if parent:
            out.write(b"from %s\n" % parent)
        for path, m in marks.items():
            out.write(b"M 100644 :%d %s\n" % (m, path.encode()))
        out.write(b"\n")

    for n in range(COMMITS):
        changes = {}
        for i in range(n * per_commit, (n + 1) * per_commit):
            size = rng.randint(MEAN_SIZE // 5, MEAN_SIZE * 9 // 5)
            changes[f"src/d{i % 50:02d}/f{i:05d}.bin"] = rng.randbytes(size)
        for path in rng.sample(sorted(contents), min(5, len(contents))):
            changes[path] = contents[path] + b"edit %d\n" % n
        contents.update(changes)
        commit(b"refs/heads/main", n, changes, None)
    commit(b"refs/heads/small", COMMITS, {"CHANGELOG": b"one small change\n"},
           b"refs/heads/main")


def generated_repo() -> Path:
    """The bare repo, generated once and cached under the temp dir."""
    path = CACHE_DIR / f"receive-{REPO_VERSION}.git"
    if (path / "gitpaas-bench-done").exists():
        return path
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", "--bare", str(path)], check=True)
    with tempfile.TemporaryFile() as stream:
        fast_import_stream(stream)
        stream.seek(0)
        subprocess.run(["git", "-C", str(path), "fast-import", "--quiet"], stdin=stream,
                       check=True, timeout=600)
    subprocess.run(["git", "-C", str(path), "repack", "-adq"], check=True, timeout=600)
    (path / "gitpaas-bench-done").write_text("ok\n")
    return path


@contextlib.contextmanager
def native_sshd(tmp: Path, public_key: Path) -> Iterator[int]:
    """A throwaway OpenSSH server on a loopback port: own config, host key and
    authorized_keys in ``tmp``; the system's sshd and its config are left alone."""
    if not os.path.exists(SSHD):
        raise RuntimeError("sshd is missing: apt-get install openssh-server")
    from tests.harness import free_port

    tmp.mkdir(parents=True, exist_ok=True)
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation dir
    host_key = tmp / "host_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)],
                   check=True)
    (tmp / "authorized_keys").write_bytes(public_key.read_bytes())
    port = free_port()
    config = tmp / "sshd_config"
    config.write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {host_key}",
        f"PidFile {tmp / 'sshd.pid'}", f"AuthorizedKeysFile {tmp / 'authorized_keys'}",
        "StrictModes no", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
        "UsePAM no", "PermitRootLogin prohibit-password", "AllowUsers root",
        "UseDNS no", "PrintMotd no",
        # A clean HOME: root's ~/.bashrc (sourced by bash under ssh) is no part of git.
        f"SetEnv HOME={tmp}", ""]))
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=subprocess.DEVNULL,
                            stderr=open(tmp / "sshd.log", "wb"))  # noqa: SIM115
    try:
        from .common import wait_until

        def listening() -> bool:
            import socket

            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                return True
            except OSError:
                return False

        if not wait_until(listening, 10, 0.05):
            raise RuntimeError(f"sshd did not start: {(tmp / 'sshd.log').read_text()}")
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def timed_push(source: Path, url: str, refspec: str, key: Path, port: int) -> float:
    env = {**os.environ, "GIT_SSH_COMMAND": " ".join(["ssh", "-p", str(port), "-i", str(key),
                                                       *SSH_OPTS])}
    t0 = time.monotonic()
    result = subprocess.run(["git", "-C", str(source), "push", "-q", url, refspec],
                            capture_output=True, text=True, env=env, timeout=900)
    elapsed = time.monotonic() - t0
    if result.returncode != 0:
        raise RuntimeError(f"push to {url} failed: {result.stderr[-2000:]}")
    return elapsed


def run(args: argparse.Namespace, table: Table) -> None:
    t0 = time.monotonic()
    source = generated_repo()
    print(f"       generated repo ready in {time.monotonic() - t0:.1f} s: {source}", flush=True)
    client = docker_client()
    reps = max(1, min(args.reps, 3))
    full: dict[str, list[float]] = {"native": [], "gitpaas": []}
    small: dict[str, list[float]] = {"native": [], "gitpaas": []}
    with tempfile.TemporaryDirectory(prefix="gitpaas-bench-recv-") as tmpdir:
        tmp = Path(tmpdir)
        with platform(tmp / "srv", client) as srv, \
                native_sshd(tmp / "sshd", Path(f"{srv.admin_key}.pub")) as sshd_port:
            key = srv.admin_key
            assert key is not None
            for i in range(reps):
                bare = tmp / f"native{i}.git"
                subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
                native_url = f"ssh://root@127.0.0.1:{sshd_port}{bare}"
                app = f"recv{i}"
                created = srv.ssh("apps:create", app)
                if created.returncode != 0:
                    raise RuntimeError(f"apps:create failed: {created.stderr}")
                full["native"].append(timed_push(source, native_url, "main:refs/heads/bench",
                                                 key, sshd_port))
                full["gitpaas"].append(timed_push(source, srv.url(app), "main:refs/heads/bench",
                                                  key, srv.ssh_port))
                small["native"].append(timed_push(source, native_url, "small:refs/heads/bench",
                                                  key, sshd_port))
                small["gitpaas"].append(timed_push(source, srv.url(app),
                                                   "small:refs/heads/bench", key, srv.ssh_port))
                stages = pack_stages(srv.log(), app)
                print(f"       rep {i}: full native {full['native'][-1]:.2f} gitpaas "
                      f"{full['gitpaas'][-1]:.2f}, small native {small['native'][-1]:.3f} "
                      f"gitpaas {small['gitpaas'][-1]:.3f}", flush=True)
                if stages:
                    print("              full pack: " + stage_text(stages[0]), flush=True)
            server_full = [receive_times(srv.log(), f"recv{i}")[0] for i in range(reps)]
            server_stages = [pack_stages(srv.log(), f"recv{i}")[0] for i in range(reps)]
            # a few more small pushes: they are quick and noisy
            extra = tmp / "extra.git"
            subprocess.run(["git", "init", "-q", "--bare", str(extra)], check=True)
            for _ in range(4):
                for name, url, port in (
                        ("native", f"ssh://root@127.0.0.1:{sshd_port}{tmp}/native0.git",
                         sshd_port),
                        ("gitpaas", srv.url("recv0"), srv.ssh_port)):
                    # move the branch back so the same small push happens again
                    back = "main:refs/heads/bench"
                    timed_push(source, url, f"+{back}", key, port)
                    small[name].append(timed_push(source, url, "small:refs/heads/bench",
                                                  key, port))
    size = sum(f.stat().st_size for f in (source / "objects/pack").glob("*.pack"))
    report(table, full, small, server_full, server_stages, reps, size)


def stage_text(stage: dict[str, float]) -> str:
    return (f"{stage['total']:.3f} s = client {stage['client']:.3f} + scan {stage['scan']:.3f}"
            f" + index-pack {stage['index_pack']:.3f} + after the last byte "
            f"{stage['tail']:.3f}")


def report(table: Table, full: dict[str, list[float]], small: dict[str, list[float]],
           server_full: list[float], server_stages: list[dict[str, float]], reps: int,
           size: int) -> None:
    f_native, f_gp = median(full["native"]), median(full["gitpaas"])
    table.add("receive", f"full push ({size / 1e6:.0f} MB pack, {FILES} files, {COMMITS} "
              f"commits), p50 of {reps}", secs(f_gp), f"{secs(f_native)} OpenSSH+git",
              f_gp / f_native, f"<= {TARGET}x", f_gp / f_native <= TARGET)
    ratios = sorted(g / n for g, n in zip(full["gitpaas"], full["native"], strict=True))
    table.add("receive", "  ratio of each rep (pushed one after the other)",
              " ".join(f"{r:.2f}x" for r in ratios))
    table.add("receive", "  of which gitpaas reads and stores the pack (server log)",
              secs(median(server_full)))
    for key, what in (("client", "waiting for the client's bytes"),
                      ("scan", "the guards' scan (Python)"),
                      ("index_pack", "waiting for index-pack to take the bytes"),
                      ("tail", "index-pack after the last byte")):
        table.add("receive", f"    {what}, p50",
                  secs(median([s[key] for s in server_stages])))
    s_native, s_gp = median(small["native"]), median(small["gitpaas"])
    table.add("receive", f"one small commit on top, p50 of {len(small['gitpaas'])}",
              secs(s_gp), f"{secs(s_native)} OpenSSH+git", s_gp / s_native, f"<= {TARGET}x",
              s_gp / s_native <= TARGET)


def budget(args: argparse.Namespace) -> int:
    """Seconds this part may take (generating the repo the first time included)."""
    return 900
