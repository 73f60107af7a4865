"""Counters and a latency histogram, rendered in Prometheus' text format."""

from __future__ import annotations

from bisect import bisect_left

HIST = "gitpaas_router_request_duration_seconds"
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """Per-process counters; cheap enough to update on every request."""

    def __init__(self, worker: int = 0) -> None:
        self.worker = worker
        self.requests: dict[int, int] = {}
        self.errors: dict[str, int] = {}
        self.buckets = [0] * (len(BUCKETS) + 1)
        self.latency_sum = 0.0
        self.bytes_out = 0
        self.connections = 0

    def observe(self, status: int, seconds: float, nbytes: int) -> None:
        """Count one finished request."""
        self.requests[status] = self.requests.get(status, 0) + 1
        self.buckets[bisect_left(BUCKETS, seconds)] += 1
        self.latency_sum += seconds
        self.bytes_out += nbytes

    def error(self, kind: str) -> None:
        """Count one error of ``kind`` (connect_refused, backend_5xx, redis_down, ...)."""
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def render(self, cache_entries: int = 0) -> str:
        """The Prometheus text exposition of every metric."""
        w = f'worker="{self.worker}"'
        out = [
            "# HELP gitpaas_router_requests_total Requests answered, by status code.",
            "# TYPE gitpaas_router_requests_total counter",
        ]
        for code, n in sorted(self.requests.items()):
            out.append(f'gitpaas_router_requests_total{{{w},code="{code}"}} {n}')
        out += [
            "# HELP gitpaas_router_errors_total Routing and backend errors, by kind.",
            "# TYPE gitpaas_router_errors_total counter",
        ]
        for kind, n in sorted(self.errors.items()):
            out.append(f'gitpaas_router_errors_total{{{w},kind="{kind}"}} {n}')
        out += [
            "# HELP gitpaas_router_request_duration_seconds Request head to response end.",
            "# TYPE gitpaas_router_request_duration_seconds histogram",
        ]
        total = 0
        for bound, n in zip(BUCKETS, self.buckets, strict=False):
            total += n
            out.append(f'{HIST}_bucket{{{w},le="{bound}"}} {total}')
        total += self.buckets[-1]
        out.append(f'{HIST}_bucket{{{w},le="+Inf"}} {total}')
        out.append(f"{HIST}_sum{{{w}}} {self.latency_sum:.6f}")
        out.append(f"{HIST}_count{{{w}}} {total}")
        out += [
            "# TYPE gitpaas_router_response_bytes_total counter",
            f"gitpaas_router_response_bytes_total{{{w}}} {self.bytes_out}",
            "# TYPE gitpaas_router_open_connections gauge",
            f"gitpaas_router_open_connections{{{w}}} {self.connections}",
            "# TYPE gitpaas_router_cached_routes gauge",
            f"gitpaas_router_cached_routes{{{w}}} {cache_entries}",
        ]
        return "\n".join(out) + "\n"
