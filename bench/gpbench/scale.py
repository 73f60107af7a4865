"""Scale: N tiny busybox httpd apps on one host. Deploy time of the N-th against the
first, ``apps`` and ``routes`` answer times at N apps against 1, router throughput with N
frontends against 1, and the resident memory of ``gitpaas serve``."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
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
    rss_mb,
)
from .push import STAGES, own_share, spread, write_app

RSS_TARGET_MB = 150
PROBES = 5  # Docker-only probes at 1 app and at N
DEPLOY_TARGET = 1.2  # the last deploys against the first (issue 17)


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


NETWORK_RE = re.compile(r"network (\S+): \S+, [\d.]+ s \(Docker's create ([\d.]+) s\)")


CLAIM_RE = re.compile(r"network (\S+): claimed by (\S+)")


def network_create(log: str, instance: str, app: str) -> float:
    """Seconds Docker took to create the app's network (``runtime/network.py``'s log);
    0 when the app claimed a spare made ahead (``spare_claimed``)."""
    for m in NETWORK_RE.finditer(log):
        if m.group(1) == f"{instance}.{app}":
            return float(m.group(2))
    return 0.0


def spare_claimed(log: str, app: str) -> bool:
    """Whether ``app`` got a spare network (made ahead by serve) rather than its own."""
    return any(m.group(2) == app for m in CLAIM_RE.finditer(log))


def spare_creates(log: str, instance: str) -> list[float]:
    """Seconds of Docker's create of each spare network, in order (made by serve's
    filler after a claiming deploy's starts: off every deploy's path, but on the host)."""
    prefix = f"{instance}.spare_"
    return [float(m.group(2)) for m in NETWORK_RE.finditer(log)
            if m.group(1).startswith(prefix)]


STAMP_RE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")
DEPLOY_RE = re.compile(r"deploy timings (\S+) v1: (.*)$")


def stamp(line: str) -> float | None:
    """The time of one log line (the server's logging format), or None."""
    import datetime

    m = STAMP_RE.match(line)
    if m is None:
        return None
    return datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()


def spare_overlap(log: str, instance: str) -> dict[str, float]:
    """For each app's first deploy: seconds of its deploy (prepare to after, from its
    ``deploy timings`` line) during which serve's filler was creating a spare network:
    where the refill's cost went, if not off the deploy's path."""
    windows: dict[str, tuple[float, float]] = {}
    creates: list[tuple[float, float]] = []
    prefix = f"{instance}.spare_"
    for line in log.splitlines():
        at = stamp(line)
        if at is None:
            continue
        m = DEPLOY_RE.search(line)
        if m:
            total = sum(float(p.split("=")[1]) for p in m.group(2).split())
            windows.setdefault(m.group(1), (at - total, at))
        n = NETWORK_RE.search(line)
        if n and n.group(1).startswith(prefix):
            took = float(line.split(": ", 2)[-1].split(", ")[1].split(" s")[0])
            creates.append((at - took, at))
    return {app: sum(max(0.0, min(b, d) - max(a, c)) for c, d in creates)
            for app, (a, b) in windows.items()}


def hand_probe(client, image: str, instance: str, tag: str) -> tuple[float, float]:  # noqa: ANN001
    """Docker alone, as a deploy of a new app uses it: a bridge network (subnet picked as
    gitpaas does) then a container on it (no published port: the default
    ``container_host`` routes to its bridge address), started. Seconds of
    each; both are removed at once (labelled with the instance: the cleanup gets them
    should this fail half-way)."""
    from gitpaas.runtime.network import Net, bridge_name, create_network

    name = f"{instance}.hand{tag}"
    labels = {"gitpaas.instance": instance}
    t0 = time.monotonic()
    create_network(client, name, Net("10.213.0.0/16"), 26, bridge_name(name), labels)
    t1 = time.monotonic()
    container = None
    try:
        container = client.containers.create(
            image, ["/bin/httpd", "-f", "-p", "5000"], name=name, labels=labels, init=True,
            network=name)
        container.start()
        t2 = time.monotonic()
    finally:
        if container is not None:
            container.remove(force=True)
        client.api.remove_network(name)
    return t1 - t0, t2 - t1


def deploy_one(srv, repo: Path, app: str) -> tuple[float, dict[str, float]]:  # noqa: ANN001
    """Push ``repo`` as the new app ``app``: seconds until the push returned (the release
    is live), and the deploy's stages from the server's log."""
    t0 = time.monotonic()
    result = srv.push(repo, app)
    took = time.monotonic() - t0
    if result.returncode != 0:
        raise RuntimeError(f"push of {app} failed: {result.stderr[-1500:]}")
    log = srv.log()
    timing = deploy_timings(log, app, 1)
    timing["receive"] = (receive_times(log, app) or [0.0])[-1]
    timing["network"] = network_create(log, srv.instance, app)
    timing["spare"] = 1.0 if spare_claimed(log, app) else 0.0
    timing["own"] = own_share(took, timing)
    return took, timing


def destroy_all(srv, apps: list[str]) -> None:  # noqa: ANN001
    """``apps:destroy`` every app, four at a time (containers, networks, images, routes)."""
    def destroy(app: str) -> None:
        result = srv.ssh("apps:destroy", app, "--confirm", app)
        if result.returncode != 0:
            raise RuntimeError(f"apps:destroy {app} failed: {result.stderr}")

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(destroy, apps))


def run(args: argparse.Namespace, table: Table) -> None:
    if not shutil.which("wrk"):
        raise RuntimeError("wrk is not installed (Debian package wrk)")
    client = docker_client()
    image = busybox_image(client)
    n = max(2, args.apps)
    k = min(PROBES, n // 2)
    deploys: list[float] = []
    stages: list[dict[str, float]] = []
    again: list[float] = []
    try:
        with tempfile.TemporaryDirectory(prefix="gitpaas-bench-scale-") as tmpdir:
            tmp = Path(tmpdir)
            from tests.harness import git

            repo = tmp / "app"
            write_app(repo, image)
            git(repo, "init", "-q", "-b", "main")
            git(repo, "add", "-A")
            git(repo, "commit", "-q", "-m", "app")
            env = {"GITPAAS_DEFAULT_MEMORY": "24m"}
            if args.network_spares is not None:  # A/B: 0 = every app creates its network
                env["GITPAAS_APP_NETWORK_SPARES"] = str(args.network_spares)
            with platform(tmp / "srv", client, **env) as srv:
                assert srv.proc is not None
                rss_start = rss_mb(srv.proc.pid)
                apps = [f"s{i:03d}" for i in range(n)]
                for i, app in enumerate(apps):
                    took, timing = deploy_one(srv, repo, app)
                    deploys.append(took)
                    stages.append(timing)
                    if i == 0:
                        hand1 = [hand_probe(client, image, srv.instance, f"a{j}")
                                 for j in range(PROBES)]
                        apps1 = timed_ssh(srv, "apps")
                        routes1 = timed_ssh(srv, "routes")
                        rss_one = rss_mb(srv.proc.pid)
                    if i % 20 == 19 or i < 3:
                        print(f"       {i + 1} apps, last deploy {took:.3f} s: "
                              + " ".join(f"{k}={timing.get(k, 0.0):.3f}" for k in STAGES)
                              + (" (spare network)" if timing["spare"] else
                                 f" (network {timing['network']:.3f})")
                              + f", serve RSS {rss_mb(srv.proc.pid):.0f} MiB, load "
                              f"{os.getloadavg()[0]:.1f}", flush=True)
                hand_n = [hand_probe(client, image, srv.instance, f"b{j}")
                          for j in range(PROBES)]
                apps_n = timed_ssh(srv, "apps")
                routes_n = timed_ssh(srv, "routes")
                hosts = [srv.host(a) for a in apps]
                wrk_rps(srv, hosts, tmp, 2)  # fills the router's cache
                rps_n = wrk_rps(srv, hosts, tmp, args.duration)
                rps_1 = wrk_rps(srv, hosts[:1], tmp, args.duration)
                rss_end = rss_mb(srv.proc.pid)
                spares = spare_creates(srv.log(), srv.instance)
                overlap = spare_overlap(srv.log(), srv.instance)
                # The other side of the bracket: the load of a shared machine drifts over
                # a run, so the first apps' deploys are measured again once the host is
                # back to no app.
                t0 = time.monotonic()
                destroy_all(srv, apps)
                print(f"       apps:destroy of {n} apps took {time.monotonic() - t0:.0f} s",
                      flush=True)
                again = [deploy_one(srv, repo, f"z{j:03d}")[0] for j in range(k)]
                t0 = time.monotonic()
            print(f"       cleanup took {time.monotonic() - t0:.0f} s", flush=True)
    finally:
        remove_image(client, image)
    report(table, n, k, deploys, stages, again, hand1, hand_n)
    if spares:
        table.add("scale", f"  spare networks made by serve: {len(spares)}, Docker's create"
                  f" median of the last {k} (range {spread(spares[-k:])})",
                  f"{median(spares[-k:]):.3f} s", f"{median(spares[:k]):.3f} s first {k}",
                  median(spares[-k:]) / median(spares[:k]))
        first = [overlap.get(a, 0.0) for a in apps[:k]]
        last = [overlap.get(a, 0.0) for a in apps[-k:]]
        table.add("scale", "  of which during a deploy (its prepare to after), median "
                  f"(range {spread(last)})", f"{median(last):.3f} s",
                  f"{median(first):.3f} s apps 1-{k}")
    table.add("scale", f"ssh apps with {n} apps", f"{apps_n:.3f} s", f"{apps1:.3f} s 1 app",
              apps_n / apps1)
    table.add("scale", f"ssh routes with {n} apps", f"{routes_n:.3f} s",
              f"{routes1:.3f} s 1 app", routes_n / routes1)
    table.add("scale", f"router req/s, {n} frontends", f"{rps_n:.0f}", f"{rps_1:.0f} 1 frontend",
              rps_n / rps_1)
    table.add("scale", f"gitpaas serve RSS with {n} apps", f"{rss_end:.0f} MiB",
              f"{rss_one:.0f} MiB 1 app (start {rss_start:.0f})", rss_end / rss_one,
              f"< {RSS_TARGET_MB} MiB", rss_end < RSS_TARGET_MB)


def report(table: Table, n: int, k: int, deploys: list[float],  # noqa: PLR0913
           stages: list[dict[str, float]], again: list[float],
           hand1: list[tuple[float, float]], hand_n: list[tuple[float, float]]) -> None:
    """The deploy rows: the last ``k`` deploys against the first ``k`` and against ``k``
    new apps deployed once every app was destroyed again (medians, with their range)."""
    first, last = median(deploys[:k]), median(deploys[-k:])
    base = median(deploys[:k] + again)
    table.add("scale", f"deploy of apps {n - k + 1}-{n}, median (range {spread(deploys[-k:])})",
              f"{last:.3f} s", f"{base:.3f} s apps 1-{k} before and after", last / base,
              f"<= {DEPLOY_TARGET}x", last / base <= DEPLOY_TARGET)
    table.add("scale", f"  against apps 1-{k} (range {spread(deploys[:k])})", f"{last:.3f} s",
              f"{first:.3f} s", last / first)
    table.add("scale", f"  against {k} apps after all were destroyed (range {spread(again)})",
              f"{last:.3f} s", f"{median(again):.3f} s", last / median(again))
    pooled = (sum(s.get("spare", 0.0) for s in stages[:k]),
              sum(s.get("spare", 0.0) for s in stages[-k:]))
    table.add("scale", "  apps that claimed a spare network (no create, no netwait)",
              f"{pooled[1]:.0f} of the last {k}", f"{pooled[0]:.0f} of the first {k}")
    for stage in (*STAGES, "network", "own"):
        a = median([s.get(stage, 0.0) for s in stages[:k]])
        b = median([s.get(stage, 0.0) for s in stages[-k:]])
        what = {"network": "Docker's network create (beside the build; 0: a spare)",
                "own": "own share (all but build, netwait and start)"}.get(stage, f"stage {stage}")
        table.add("scale", f"  {what}, median", f"{b:.3f} s", f"{a:.3f} s",
                  b / a if a > 0.0005 else None)
    for what, index in (("network create", 0), ("container create + start", 1)):
        a = [h[index] for h in hand1]
        b = [h[index] for h in hand_n]
        table.add("scale", f"  Docker alone: {what} at {n} apps, median (range {spread(b)})",
                  f"{median(b):.3f} s", f"{median(a):.3f} s at 1 app ({spread(a)})",
                  median(b) / median(a))
    for lo in range(0, n, max(1, n // 10)):
        window = deploys[lo:lo + k]
        table.add("scale", f"  deploys {lo + 1}-{lo + len(window)}, median",
                  f"{median(window):.3f} s")


def budget(args: argparse.Namespace) -> int:
    """Seconds this part may take."""
    return 240 + 12 * args.apps
