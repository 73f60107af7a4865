"""Docker alone: where an app container's start goes (issue 17). Not a default part:
``bench/run dockerstart [--reps N]``.

Creates and starts busybox httpd containers the way ``DockerRuntime.start`` does (its
app network, no published port with the default ``container_host`` since issue 17's scale
round, init, no-new-privileges, capabilities, pids limit, log and restart options, the
default memory limit), then the same with one option left out (or, for the published
loopback port gitpaas used before and still uses for another ``container_host``, added)
at a time; one and two containers side by side, the variants interleaved round by
round. Prints the median wall time of a round (and the create, start and reload of each
container) and the CPU time dockerd and containerd spent in it (clock ticks of 10 ms; on
a shared engine it includes whatever else the daemons did meanwhile), each against the
full set of options.
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .common import Table, busybox_image, docker_client, median, remove_image

SANDBOX = ("security_opt", "cap_drop", "cap_add", "pids_limit")
Options = dict[str, Any]


def without(*keys: str) -> Callable[[Options], Options]:
    return lambda opts: {k: v for k, v in opts.items() if k not in keys}


VARIANTS: dict[str, Callable[[Options], Options]] = {
    "as gitpaas starts it": lambda opts: opts,
    "a published loopback port (docker-proxy, DNAT rules)": lambda opts: {
        **opts, "ports": {"5000/tcp": ("127.0.0.1", None)}},
    "no init": lambda opts: {**opts, "init": False},
    "Docker's default bridge, not the app's network": without("network"),
    "no network at all": lambda opts: {**without("network")(opts),
                                       "network_mode": "none"},
    "no sandbox options (caps, no-new-privileges, pids)": without(*SANDBOX),
    "no log options, no restart policy": without("log_config", "restart_policy"),
    "no memory limit": without("mem_limit"),
}


def options(name: str, network: str, tag: str) -> Options:
    """What ``DockerRuntime.start`` passes for a web container (gitpaas/runtime/docker.py)."""
    from gitpaas.runtime.docker import KEPT_CAPABILITIES

    return {"command": ["/bin/httpd", "-f", "-p", "5000", "-h", "/"], "name": name,
            "environment": {"PORT": "5000"}, "labels": {"gitpaas-bench": tag}, "init": True,
            "restart_policy": {"Name": "unless-stopped"},
            "log_config": {"Type": "json-file", "Config": {"max-size": "10m",
                                                           "max-file": "3"}},
            "hostname": "web",
            "security_opt": ["no-new-privileges"], "cap_drop": ["ALL"],
            "cap_add": list(KEPT_CAPABILITIES), "pids_limit": 256, "network": network,
            "mem_limit": "512m"}  # the default_memory setting


def daemons() -> list[int]:
    pids = []
    for name in ("dockerd", "containerd"):
        out = subprocess.run(["pgrep", "-xo", name], capture_output=True, text=True).stdout
        pids += [int(p) for p in out.split()]
    return pids


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of ``pids`` and their reaped children (dockerd's re-execs)."""
    ticks = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += sum(int(x) for x in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def one_round(client, image: str, network: str, tag: str, variant: str,  # noqa: ANN001
              n: int, pids: list[int]) -> tuple[float, float, list[tuple[float, ...]]]:
    """``n`` containers created and started side by side: (wall, daemons' CPU, per
    container (create, start, reload))."""
    def one(i: int) -> tuple[Any, tuple[float, ...]]:
        opts = VARIANTS[variant](options(f"gpbench-{tag}-{i}-{secrets.token_hex(3)}",
                                         network, tag))
        t0 = time.monotonic()
        c = client.containers.create(image, **opts)
        t1 = time.monotonic()
        c.start()
        t2 = time.monotonic()
        c.reload()
        return c, (t1 - t0, t2 - t1, time.monotonic() - t2)

    cpu0, t0 = cpu_seconds(pids), time.monotonic()
    with ThreadPoolExecutor(n) as pool:
        done = list(pool.map(one, range(n)))
    wall, cpu = time.monotonic() - t0, cpu_seconds(pids) - cpu0
    for c, _ in done:
        c.remove(force=True)
    return wall, cpu, [parts for _, parts in done]


def run(args: argparse.Namespace, table: Table) -> None:
    client = docker_client()
    image = busybox_image(client)
    tag = secrets.token_hex(3)
    network = client.networks.create(f"gpbench-{tag}", driver="bridge",
                                     labels={"gitpaas-bench": tag})
    pids = daemons()
    results: dict[tuple[str, int], list[tuple[float, float, list[tuple[float, ...]]]]] = {}
    try:
        one_round(client, image, network.name, tag, "as gitpaas starts it", 1, pids)  # warm
        for r in range(args.reps):
            for variant in VARIANTS:
                for n in (1, 2):
                    results.setdefault((variant, n), []).append(
                        one_round(client, image, network.name, tag, variant, n, pids))
            print(f"       round {r + 1} of {args.reps}, load {os.getloadavg()[0]:.1f}",
                  flush=True)
    finally:
        for c in client.containers.list(all=True, filters={"label": f"gitpaas-bench={tag}"}):
            c.remove(force=True)
        network.remove()
        remove_image(client, image)
    for n in (1, 2):
        ref = results[("as gitpaas starts it", n)]
        ref_wall = median([w for w, _, _ in ref])
        for variant in VARIANTS:
            rounds = results[(variant, n)]
            walls = [w for w, _, _ in rounds]
            parts = [p for _, _, ps in rounds for p in ps]
            create, start, reload = (median([p[i] for p in parts]) for i in range(3))
            table.add("dockerstart", f"{n} side by side: {variant}, p50 of {args.reps} "
                      f"(range {min(walls):.3f}-{max(walls):.3f})", f"{median(walls):.3f} s",
                      f"create {create:.3f} start {start:.3f} reload {reload:.3f}; "
                      f"daemons' CPU {median([c for _, c, _ in rounds]):.2f} s",
                      median(walls) / ref_wall)


def budget(args: argparse.Namespace) -> int:
    """Seconds this part may take."""
    return 60 + 12 * args.reps
