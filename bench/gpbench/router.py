"""Router: runs ``bench/router`` (wrk against a direct backend, nginx and the gitpaas
edge, with 1 and 10,000 frontends) and copies its ratios into the table."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys

from .common import ROOT, Table


def run(args: argparse.Namespace, table: Table) -> None:
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "router"),
                             "--duration", str(args.duration), "--rounds", "3"],
                            capture_output=True, text=True,
                            timeout=budget(args) - 10)
    print(result.stdout, flush=True)
    if result.returncode != 0:
        raise RuntimeError(f"bench/router failed: {result.stderr[-1500:]}")
    rows: dict[tuple[str, str], tuple[float, float, float]] = {}
    for line in result.stdout.splitlines():
        m = re.match(r"\s*(\d+)\s+(direct|nginx|edge)\s+([\d.]+)\s+\S+\s+([\d.]+)\s+([\d.]+)"
                     r"\s+\S+\s+\d+\s+([\d.]+)", line)
        if m:
            rows[(m.group(1), m.group(2))] = (float(m.group(3)), float(m.group(5)),
                                              float(m.group(6)))
    for count in sorted({c for c, _ in rows}, key=int):
        nginx, router = rows.get((count, "nginx")), rows.get((count, "edge"))
        if not (nginx and router):
            continue
        table.add("router", f"req/s with {count} frontends", f"{router[0]:.0f}",
                  f"{nginx[0]:.0f} nginx", router[0] / nginx[0])
        table.add("router", f"p99 with {count} frontends", f"{router[1]:.2f} ms",
                  f"{nginx[1]:.2f} ms nginx", router[1] / nginx[1] if nginx[1] else None)
        table.add("router", f"CPU us/req with {count} frontends", f"{router[2]:.1f}",
                  f"{nginx[2]:.1f} nginx", router[2] / nginx[2] if nginx[2] else None)


def budget(args: argparse.Namespace) -> int:
    """Seconds this part may take (bench/router: warm-ups, then 2 x 3 x 4 wrk runs of
    ``--duration``)."""
    return 240 + 40 * args.duration
