"""Who may start an SSH connection, and when: caps and a per-source token bucket.

Every connection takes a slot when it is accepted and gives it back when it ends: at most
``max_total`` at once, at most ``max_per_source`` from one source. A source is an IPv4
address or an IPv6 /64 (one host usually holds a whole /64). Before the key exchange a
connection also takes a token from its source's bucket (``rate`` tokens a second, at most
``burst`` saved up). When the bucket is empty the connection waits for the next token
without any work done (no banner, no key exchange), and ``burst`` connections at most may
wait; the ones after them are refused. So one source gets key exchanges at ``rate`` a
second in the long run (what DHEat, CVE-2002-20001, needs to be unbounded), while a client
that opens its connections one after another is slowed down, never refused.

Across all sources, OpenSSH's ``MaxStartups start:rate:full``: while ``start`` or more
connections are not yet authenticated, a new one is refused with probability ``rate`` %,
rising linearly to 100 % at ``full``. Authenticated connections do not count and are never
refused by it; so many sources at once cannot hold more than ``full`` key exchanges and
logins in progress, and a legitimate client still gets through (after a retry) meanwhile.
"""

from __future__ import annotations

import ipaddress
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

# Reasons a connection is refused (the accept loop counts and logs them).
TOO_MANY = "too many connections"
TOO_MANY_FROM_SOURCE = "too many connections from one source"
TOO_FAST = "connections too fast from one source"
TOO_MANY_STARTUPS = "too many unauthenticated connections"


@dataclass(frozen=True)
class Startups:
    """OpenSSH's ``MaxStartups start:rate:full`` (``full`` 0: off)."""

    start: int = 0
    rate: int = 100
    full: int = 0

    @classmethod
    def parse(cls, text: str) -> Startups:
        """``START:RATE:FULL`` (START <= FULL, RATE a percentage), ``N`` (= ``N:100:N``),
        or ``0`` (off); ValueError for anything else."""
        parts = text.strip().split(":")
        if len(parts) == 1:
            parts = [parts[0], "100", parts[0]]
        if len(parts) != 3 or not all(p.isascii() and p.isdigit() for p in parts):
            raise ValueError("expected START:RATE:FULL (as 10:30:100), N, or 0 (off)")
        start, rate, full = (int(p) for p in parts)
        if start > full or rate > 100:
            raise ValueError("START must not exceed FULL, RATE is a percentage (0-100)")
        return cls(start, rate, full)

    def drop_chance(self, unauthenticated: int) -> float:
        """The probability that a new connection is refused while ``unauthenticated``
        connections are in their key exchange or login."""
        if self.full <= 0 or unauthenticated < self.start:
            return 0.0
        if unauthenticated >= self.full:
            return 1.0
        span = self.full - self.start
        return (self.rate + (100 - self.rate) * (unauthenticated - self.start) / span) / 100


def source_of(address: str) -> str:
    """The unit of per-source limits: the IPv4 address, or the IPv6 /64 it lies in."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


@dataclass
class _Source:
    tokens: float
    stamp: float
    connections: int = 0


@dataclass
class Limiter:
    """Thread-safe caps and token buckets; ``clock`` is injectable for unit tests."""

    max_total: int
    max_per_source: int
    rate: float
    burst: int
    startups: Startups = field(default_factory=Startups)
    clock: Callable[[], float] = time.monotonic
    chance: Callable[[], float] = random.random
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _sources: dict[str, _Source] = field(default_factory=dict, repr=False)
    _total: int = 0
    _unauthenticated: int = 0
    _pruned: float = 0.0

    @property
    def total(self) -> int:
        """Connections holding a slot now."""
        return self._total

    @property
    def unauthenticated(self) -> int:
        """Connections holding a slot now that have not authenticated (yet)."""
        return self._unauthenticated

    def connections(self, address: str) -> int:
        """Connections holding a slot now from the source of ``address``."""
        with self._lock:
            entry = self._sources.get(source_of(address))
            return entry.connections if entry else 0

    def admit(self, address: str) -> str | None:
        """Take a slot for a new connection from ``address``; or say why not (no slot taken)."""
        key = source_of(address)
        with self._lock:
            if self.max_total > 0 and self._total >= self.max_total:
                return TOO_MANY
            entry = self._refill(key)
            if self.max_per_source > 0 and entry.connections >= self.max_per_source:
                return TOO_MANY_FROM_SOURCE
            drop = self.startups.drop_chance(self._unauthenticated)
            if drop > 0 and (drop >= 1 or self.chance() < drop):
                return TOO_MANY_STARTUPS
            entry.connections += 1
            self._total += 1
            self._unauthenticated += 1
            return None

    def authenticated(self) -> None:
        """The connection that :meth:`admit` let in has authenticated: it no longer counts
        against ``startups``. Call once per connection, before :meth:`release`."""
        with self._lock:
            self._unauthenticated -= 1

    def release(self, address: str, authenticated: bool = False) -> None:
        """Give back the slot that :meth:`admit` took (``authenticated``: after
        :meth:`authenticated` was called for it)."""
        key = source_of(address)
        with self._lock:
            if not authenticated:
                self._unauthenticated -= 1
            self._total -= 1
            entry = self._sources.get(key)
            if entry is not None:
                entry.connections -= 1
            self._forget_idle()

    def reserve(self, address: str) -> float | None:
        """Take a token for ``address``: seconds to wait before the key exchange (0: none),
        or None when ``burst`` connections of that source are waiting already (refuse)."""
        if self.rate <= 0:
            return 0.0
        key = source_of(address)
        with self._lock:
            entry = self._refill(key)
            if entry.tokens - 1 < -self.burst:
                return None
            entry.tokens -= 1
            return 0.0 if entry.tokens >= 0 else -entry.tokens / self.rate

    def _refill(self, key: str) -> _Source:
        now = self.clock()
        entry = self._sources.get(key)
        if entry is None:
            entry = self._sources[key] = _Source(tokens=float(self.burst), stamp=now)
        elif self.rate > 0:
            entry.tokens = min(float(self.burst), entry.tokens + (now - entry.stamp) * self.rate)
            entry.stamp = now
        return entry

    def _forget_idle(self) -> None:
        """Drop sources with no connection and a full bucket: memory stays bounded."""
        now = self.clock()
        if len(self._sources) < 1024 or now - self._pruned < 1.0:
            return
        self._pruned = now
        for key in [k for k, e in self._sources.items() if e.connections <= 0
                    and (self.rate <= 0
                         or e.tokens + (now - e.stamp) * self.rate >= self.burst)]:
            del self._sources[key]
