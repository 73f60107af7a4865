"""Push-to-live: ``git push`` of a cached build, until the new release answers through the
router; against ``docker build`` + ``docker run`` by hand. Measured for each web replica
count of ``--replicas`` (default 1, the formation a new app runs, and 2), each with its
stages and the split of the platform's own share."""

from __future__ import annotations

import argparse
import http.client
import re
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .common import (
    Table,
    busybox_image,
    deploy_timings,
    docker_client,
    median,
    platform,
    receive_times,
    remove_image,
    secs,
    wait_until,
)

STAGES = ("receive", "prepare", "build", "netwait", "start", "check", "swap", "after")
DOCKER_STAGES = ("build", "netwait", "start")  # Docker's work: not the platform's own share
TARGET_TOTAL, TARGET_OWN = 0.6, 0.05  # seconds (issue 17)
CGI = '#!/bin/sh\nprintf \'Content-Type: text/plain\\r\\n\\r\\n%s\\n\' "$GITPAAS_RELEASE"\n'


def app_files(image: str) -> dict[str, str]:
    """busybox httpd; /cgi-bin/release tells which release answers. NOTES is not in the
    image, so a push that changes only NOTES is a fully cached build."""
    return {
        "Dockerfile": f"FROM {image}\nCOPY www /www\n"
                      'CMD ["/bin/httpd", "-f", "-p", "5000", "-h", "/www"]\n',
        "www/index.html": "ok\n",
        "www/cgi-bin/release": CGI,
        "NOTES": "0\n",
    }


def write_app(directory: Path, image: str) -> None:
    for name, text in app_files(image).items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (directory / "www/cgi-bin/release").chmod(0o755)


def http_get(port: int, path: str, host: str = "localhost", timeout: float = 2) -> str | None:
    """The body of a 200 answer, or None."""
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        try:
            conn.request("GET", path, headers={"Host": host})
            resp = conn.getresponse()
            body = resp.read().decode("utf-8", "replace")
            return body if resp.status == 200 else None
        finally:
            conn.close()
    except (OSError, http.client.HTTPException):
        return None


def docker_cli(*args: str, timeout: float = 120) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True,
                          timeout=timeout).stdout.strip()


def baseline_once(context: Path, tag: str, replicas: int, version: int) -> float:
    """``docker build`` (cached) + ``docker run`` per replica, until each one answers."""
    from tests.harness import free_port

    ports = [free_port() for _ in range(replicas)]
    names = [f"{tag.replace('/', '-').replace(':', '-')}-{version}-{i}" for i in range(replicas)]
    t0 = time.monotonic()
    try:
        docker_cli("build", "-q", "-t", tag, str(context))
        for name, port in zip(names, ports, strict=True):
            docker_cli("run", "-d", "--init", "--name", name, "-p", f"127.0.0.1:{port}:5000",
                       "-e", f"GITPAAS_RELEASE=v{version}", tag)
        for port in ports:
            if not wait_until(lambda p=port: http_get(p, "/cgi-bin/release") == f"v{version}\n",
                              30):
                raise RuntimeError("the hand-started container did not answer")
        return time.monotonic() - t0
    finally:
        subprocess.run(["docker", "rm", "-f", *names], capture_output=True, timeout=60)


def gitpaas_once(srv, repo: Path, app: str, n: int) -> tuple[float, int, dict[str, float]]:  # noqa: ANN001
    """One push of a NOTES change; seconds until the new release answers via the router.

    The timings hold the deploy's stages (the server's log) and two client-side figures:
    ``returned`` (when ``git push`` exited) and ``edge`` (from then until the router
    answered with the new release: the route is swapped before the push's last lines, so
    this is the poll's own latency, one request every 2 ms at most)."""
    from tests.harness import commit_files

    commit_files(repo, {"NOTES": f"push {n}\n"}, f"change {n}")
    t0 = time.monotonic()
    result = srv.push(repo, app)
    returned = time.monotonic() - t0
    if result.returncode != 0:
        raise RuntimeError(f"push failed: {result.stderr[-2000:]}")
    version = int(re.search(r"Building \S+ \(v(\d+)\)", result.stderr).group(1))  # type: ignore[union-attr]
    want = f"v{version}\n"
    if not wait_until(lambda: http_get(srv.http_port, "/cgi-bin/release", srv.host(app))
                      == want, 30, 0.002):
        raise RuntimeError(f"v{version} never answered through the router")
    total = time.monotonic() - t0
    timing = deploy_timings(srv.log(), app, version)
    timing.update(returned=returned, edge=total - returned)
    return total, version, timing


def wait_retired(srv, app: str, timeout: float = 60) -> float:  # noqa: ANN001
    """Wait until only the app's newest release has containers (the retirement of the
    older ones, off the push's path, is over); seconds waited."""
    client = docker_client()
    filters = {"label": [f"gitpaas.instance={srv.instance}", f"gitpaas.app={app}"]}
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < timeout:
            releases = {c["Labels"].get("gitpaas.release") for c in
                        client.api.containers(all=True, filters=filters)}
            if len(releases) <= 1:
                return time.monotonic() - t0
            time.sleep(0.02)
    finally:
        client.close()
    raise RuntimeError(f"the old releases of {app} were not retired in {timeout} s")


def ssh_once(srv) -> float:  # noqa: ANN001
    """Seconds of ``ssh paas version``: one SSH session's fixed cost (connect, key
    exchange, auth, a command, exit) with the same client the push uses."""
    t0 = time.monotonic()
    result = srv.ssh("version")
    if result.returncode != 0:
        raise RuntimeError(f"ssh version failed: {result.stderr}")
    return time.monotonic() - t0


@dataclass
class Series:
    """The pushes of one replica count and their baselines."""

    replicas: int
    totals: list[float] = field(default_factory=list)
    base: list[float] = field(default_factory=list)
    stages: list[dict[str, float]] = field(default_factory=list)
    ssh: list[float] = field(default_factory=list)


def run(args: argparse.Namespace, table: Table) -> None:
    client = docker_client()
    image = busybox_image(client)
    base_tag = f"{image.split('/')[0]}-hand/app:latest"
    counts = sorted({max(1, n) for n in args.replicas})
    done: list[Series] = []
    try:
        with tempfile.TemporaryDirectory(prefix="gitpaas-bench-push-") as tmpdir:
            tmp = Path(tmpdir)
            base_dir = tmp / "hand"
            write_app(base_dir, image)
            with platform(tmp / "srv", client) as srv:
                from tests.harness import git

                repo = tmp / "app"
                write_app(repo, image)
                git(repo, "init", "-q", "-b", "main")
                git(repo, "add", "-A")
                git(repo, "commit", "-q", "-m", "app")
                first = srv.push(repo, "shop")
                if first.returncode != 0:
                    raise RuntimeError(f"first push failed: {first.stderr[-2000:]}")
                pushes = 0
                for replicas in counts:
                    series = Series(replicas)
                    pushes = measure(srv, repo, base_dir, base_tag, series, args.reps, pushes)
                    done.append(series)
    finally:
        subprocess.run(["docker", "rmi", "-f", base_tag], capture_output=True, timeout=120)
        remove_image(client, image)
    for series in done:
        report(table, series, args.reps)


def measure(srv, repo: Path, base_dir: Path, base_tag: str, series: Series,  # noqa: ANN001
            reps: int, pushes: int) -> int:
    """``reps`` pushes with ``series.replicas`` web containers, each after one run by
    hand (interleaved, so both see the same noise); returns the pushes made so far."""
    scale = srv.ssh("ps:scale", "shop", f"web={series.replicas}")
    if scale.returncode != 0:
        raise RuntimeError(f"ps:scale failed: {scale.stderr}")
    baseline_once(base_dir, base_tag, series.replicas, 0)  # warm the build cache
    pushes += 1
    gitpaas_once(srv, repo, "shop", pushes)      # warm the platform
    for i in range(1, reps + 1):
        # The previous push's old containers are stopped and removed in the background;
        # the hand-run's are removed before its next run. Measure both from a Docker that
        # finished the previous round's clean-up.
        retired = wait_retired(srv, "shop")
        series.base.append(baseline_once(base_dir, base_tag, series.replicas, i))
        series.ssh.append(ssh_once(srv))
        pushes += 1
        total, _, timing = gitpaas_once(srv, repo, "shop", pushes)
        timing["retired"] = retired
        timing["receive"] = receive_times(srv.log(), "shop")[-1]
        series.totals.append(total)
        series.stages.append(timing)
        print(f"       {series.replicas} web, push {i}: {total:.3f} s (by hand "
              f"{series.base[-1]:.3f} s): "
              + " ".join(f"{k}={timing.get(k, 0.0):.3f}" for k in STAGES)
              + f" own={own_share(total, timing):.3f} (server {server_share(timing):.3f},"
              f" edge {timing['edge']:.3f}; ssh version {series.ssh[-1]:.3f};"
              f" waited {retired:.3f} for the retirement before)", flush=True)
    return pushes


def own_share(total: float, timing: dict[str, float]) -> float:
    """The platform's own share of a push: all but Docker's build, start and the wait
    for a new app's network (made beside the build; it was part of ``start`` before)."""
    return total - sum(timing.get(k, 0.0) for k in DOCKER_STAGES)


def server_share(timing: dict[str, float]) -> float:
    """The part of the own share the server's log accounts for (its stages but Docker's);
    the rest is the SSH session, the git client and the router's answer."""
    return sum(timing.get(k, 0.0) for k in STAGES if k not in DOCKER_STAGES)


def spread(values: list[float]) -> str:
    return f"{min(values):.3f}-{max(values):.3f}"


def report(table: Table, series: Series, reps: int) -> None:
    totals, stages, n = series.totals, series.stages, series.replicas
    p50, b50 = median(totals), median(series.base)
    table.add("push", f"push to live ({n} web), p50 of {reps} (range "
              f"{spread(totals)})", secs(p50), f"{secs(b50)} by hand", p50 / b50,
              f"< {TARGET_TOTAL} s", p50 < TARGET_TOTAL)
    for stage in STAGES:
        values = [s.get(stage, 0.0) for s in stages]
        table.add("push", f"  {n} web: stage {stage}, p50 (range {spread(values)})",
                  secs(median(values)))
    own = [own_share(t, s) for t, s in zip(totals, stages, strict=True)]
    table.add("push", f"  {n} web: own share (total-build-netwait-start), p50 "
              f"(range {spread(own)})",
              secs(median(own)), "", None, f"< {TARGET_OWN} s", median(own) < TARGET_OWN)
    server = [server_share(s) for s in stages]
    edge = [s["edge"] for s in stages]
    rest = [o - v - e for o, v, e in zip(own, server, edge, strict=True)]
    table.add("push", f"  {n} web: own = server stages + ssh/git client + edge, p50",
              f"{median(server):.3f} + {median(rest):.3f} + {median(edge):.3f} s",
              f"ssh version {secs(median(series.ssh))}")


def budget(args: argparse.Namespace) -> int:
    """Seconds this part may take."""
    return 120 + 25 * args.reps * len(set(args.replicas))
