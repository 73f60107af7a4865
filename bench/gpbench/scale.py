"""Scale: N tiny busybox httpd apps on one host. Deploy time of the N-th against the
first, ``apps`` and ``routes`` answer times at N apps against 1, router throughput with N
frontends against 1, and the resident memory of ``gitpaas serve``."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from .common import Table, busybox_image, docker_client, median, platform, remove_image, rss_mb
from .push import write_app

RSS_TARGET_MB = 150


def timed_ssh(srv, *args: str, reps: int = 5) -> float:  # noqa: ANN001
    """Median seconds of ``ssh ... ARGS`` (the command must succeed)."""
    times = []
    for _ in range(reps):
        t0 = time.monotonic()
        result = srv.ssh(*args)
        times.append(time.monotonic() - t0)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed: {result.stderr}")
    return median(times)


def wrk_rps(srv, hosts: list[str], tmp: Path, duration: int) -> float:  # noqa: ANN001
    """Requests per second through the router, Host picked at random among ``hosts``."""
    script = tmp / f"hosts{len(hosts)}.lua"
    names = ", ".join(f'"{h}"' for h in hosts)
    script.write_text(f"local hosts = {{{names}}}\nrequest = function()\n"
                      "  return wrk.format('GET', '/', {['Host'] = hosts[math.random(#hosts)]})\n"
                      "end\n")
    out = subprocess.run(["wrk", "-t1", "-c16", f"-d{duration}s", "-s", str(script),
                          f"http://127.0.0.1:{srv.http_port}/"], capture_output=True, text=True,
                         timeout=duration + 30).stdout
    rps = float(out.split("Requests/sec:")[1].split()[0])
    if "Non-2xx" in out:
        raise RuntimeError(f"the router answered errors: {out}")
    return rps


def run(args: argparse.Namespace, table: Table) -> None:
    if not shutil.which("wrk"):
        raise RuntimeError("wrk is not installed (Debian package wrk)")
    client = docker_client()
    image = busybox_image(client)
    n = max(2, args.apps)
    deploys: list[float] = []
    try:
        with tempfile.TemporaryDirectory(prefix="gitpaas-bench-scale-") as tmpdir:
            tmp = Path(tmpdir)
            from tests.harness import git

            repo = tmp / "app"
            write_app(repo, image)
            git(repo, "init", "-q", "-b", "main")
            git(repo, "add", "-A")
            git(repo, "commit", "-q", "-m", "app")
            with platform(tmp / "srv", client, GITPAAS_DEFAULT_MEMORY="24m") as srv:
                assert srv.proc is not None
                rss_start = rss_mb(srv.proc.pid)
                apps = [f"s{i:03d}" for i in range(n)]
                for i, app in enumerate(apps):
                    t0 = time.monotonic()
                    result = srv.push(repo, app)
                    deploys.append(time.monotonic() - t0)
                    if result.returncode != 0:
                        raise RuntimeError(f"push of {app} failed: {result.stderr[-1500:]}")
                    if i == 0:
                        apps1 = timed_ssh(srv, "apps")
                        routes1 = timed_ssh(srv, "routes")
                        rss_one = rss_mb(srv.proc.pid)
                    if i % 20 == 19:
                        print(f"       {i + 1} apps, last deploy {deploys[-1]:.2f} s, "
                              f"serve RSS {rss_mb(srv.proc.pid):.0f} MiB", flush=True)
                apps_n = timed_ssh(srv, "apps")
                routes_n = timed_ssh(srv, "routes")
                hosts = [srv.host(a) for a in apps]
                wrk_rps(srv, hosts, tmp, 2)  # fills the router's cache
                rps_n = wrk_rps(srv, hosts, tmp, args.duration)
                rps_1 = wrk_rps(srv, hosts[:1], tmp, args.duration)
                rss_end = rss_mb(srv.proc.pid)
                t0 = time.monotonic()
            print(f"       cleanup of {n} apps took {time.monotonic() - t0:.0f} s", flush=True)
    finally:
        remove_image(client, image)
    k = min(3, n // 2)
    first, last = median(deploys[:k]), median(deploys[-k:])
    table.add("scale", f"deploy of app {n} (median of the last {k})", f"{last:.3f} s",
              f"{first:.3f} s app 1", last / first, "flat (~1x)", last / first < 1.3)
    table.add("scale", f"ssh apps with {n} apps", f"{apps_n:.3f} s", f"{apps1:.3f} s 1 app",
              apps_n / apps1)
    table.add("scale", f"ssh routes with {n} apps", f"{routes_n:.3f} s",
              f"{routes1:.3f} s 1 app", routes_n / routes1)
    table.add("scale", f"router req/s, {n} frontends", f"{rps_n:.0f}", f"{rps_1:.0f} 1 frontend",
              rps_n / rps_1)
    table.add("scale", f"gitpaas serve RSS with {n} apps", f"{rss_end:.0f} MiB",
              f"{rss_one:.0f} MiB 1 app (start {rss_start:.0f})", rss_end / rss_one,
              f"< {RSS_TARGET_MB} MiB", rss_end < RSS_TARGET_MB)


def budget(args: argparse.Namespace) -> int:
    """Seconds this part may take."""
    return 180 + 8 * args.apps
