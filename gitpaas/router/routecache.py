"""Routes cached in the router, read from Hipache's keys, invalidated over pub/sub.

A cached entry past its TTL is still served while one background refresh runs
(stale-while-revalidate), so a lookup never waits on Redis once a host is known, and
known hosts keep working while Redis is down. A message on ``<prefix>routes`` drops the
named hosts at once (a wildcard name drops everything).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import time
from collections.abc import Coroutine
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from .lookup import Address, parse_backend

log = logging.getLogger("gitpaas.router")

# One round trip for many hosts: ARGV[1] is the key prefix, ARGV[2..] the hosts. Each
# host's candidates follow lookup.candidate_keys (the host, "*." + each parent suffix,
# longest first, then "*"); the answer per host is {the frontend name that matched ("":
# none), its list, the host's dead set}. The keys are built here, not passed as KEYS, to
# keep the call small: this suits one Redis server, not Redis Cluster.
LOOKUP_SCRIPT = """
local prefix, out = ARGV[1], {}
for h = 2, #ARGV do
  local host = ARGV[h]
  local names, rest = {host}, host
  while true do
    local dot = string.find(rest, '.', 1, true)
    if not dot then break end
    rest = string.sub(rest, dot + 1)
    if rest == '' then break end
    names[#names + 1] = '*.' .. rest
  end
  if host ~= '*' then names[#names + 1] = '*' end
  local found, list = '', {}
  for _, name in ipairs(names) do
    list = redis.call('LRANGE', prefix .. 'frontend:' .. name, 0, -1)
    if #list > 0 then found = name break end
  end
  out[h - 1] = {found, list, redis.call('SMEMBERS', prefix .. 'dead:' .. host)}
end
return out
"""


# Hosts re-read per pipeline: bounds how long one batch holds the event loop (~10 ms).
BATCH = 200
# Seconds a stale host waits (still served) before its batched refresh.
REFRESH_DELAY = 0.05
# Exact frontends read at start (wildcards are resolved per request host, on demand).
PRELOAD_MAX = 100_000
# Cached hosts at most (unknown hosts are cached too, as "no frontend").
MAX_ENTRIES = 200_000


class RedisUnavailable(Exception):
    """Redis could not be asked; the host is not cached."""


class Route:
    """A resolved frontend: the matched key, identifier, backends and dead marks."""

    __slots__ = (
        "host", "key", "identifier", "urls", "backends", "dead", "local_dead", "fresh_until",
        "single",
    )

    def __init__(
        self, host: str, key: str | None, identifier: str, urls: list[str], dead: set[int]
    ) -> None:
        self.host = host
        self.key = key
        self.identifier = identifier
        self.urls = urls
        self.backends: list[Address | None] = [parse_backend(u) for u in urls]
        self.dead = dead
        self.local_dead: dict[int, float] = {}
        self.fresh_until = 0.0
        # one usable backend and no dead marks: the common case, picked without work
        self.single = len(self.backends) == 1 and self.backends[0] is not None and not dead

    def dead_now(self) -> set[int]:
        """Indexes dead in Redis at the last read, plus this router's own unexpired marks."""
        if not self.local_dead:
            return self.dead
        now = time.monotonic()
        for idx, until in list(self.local_dead.items()):
            if until <= now:
                del self.local_dead[idx]
        return self.dead | set(self.local_dead)


class RouteCache:
    """Host -> :class:`Route`, backed by Redis and kept fresh by pub/sub."""

    def __init__(
        self,
        redis_url: str,
        prefix: str,
        ttl: float = 10.0,
        dead_ttl: float = 30.0,
        max_entries: int = MAX_ENTRIES,
    ) -> None:
        self.prefix = prefix
        self.max_entries = max_entries
        self.ttl = ttl
        self.dead_ttl = dead_ttl
        self.entries: dict[str, Route] = {}
        self._redis = aioredis.Redis.from_url(
            redis_url, socket_connect_timeout=0.5, socket_timeout=2, decode_responses=True
        )
        self._script = self._redis.register_script(LOOKUP_SCRIPT)
        self._inflight: dict[str, asyncio.Future[Route]] = {}
        self._misses: list[str] = []
        self._miss_flush = False
        self._refreshing: set[str] = set()
        self._stale: list[str] = []
        self._flush_scheduled = False
        self._generation = 0
        self._down_until = 0.0
        self._listener: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[object]] = set()
        self.subscribed = asyncio.Event()

    # -- reading -------------------------------------------------------------------

    def cached(self, host: str) -> Route | None:
        """The cached route of ``host`` (maybe stale: then a refresh starts), or None."""
        route = self.entries.get(host)
        if route is not None and route.fresh_until < time.monotonic():
            self._schedule_refresh(host)
        return route

    def _schedule_refresh(self, host: str) -> None:
        """Queue ``host`` for the next batched refresh (one pipeline for many hosts)."""
        if host in self._refreshing:
            return
        self._refreshing.add(host)
        self._stale.append(host)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._spawn(self._refresh_batch())

    async def fetch(self, host: str) -> Route:
        """Read ``host`` from Redis and cache it; misses of one loop turn share a pipeline."""
        pending = self._inflight.get(host)
        if pending is None:
            if time.monotonic() < self._down_until:
                raise RedisUnavailable("redis is down")
            pending = asyncio.get_running_loop().create_future()
            self._inflight[host] = pending
            self._misses.append(host)
            if not self._miss_flush:
                self._miss_flush = True
                self._spawn(self._read_misses())
        return await asyncio.shield(pending)

    async def _read_misses(self) -> None:
        await asyncio.sleep(0)  # let this loop turn queue its misses
        hosts, self._misses = self._misses[:BATCH], self._misses[BATCH:]
        self._miss_flush = bool(self._misses)
        if self._misses:
            self._spawn(self._read_misses())
        generation = self._generation
        try:
            results = await self._read_many(hosts)
        except RedisUnavailable as exc:
            for host in hosts:
                future = self._inflight.pop(host)
                future.set_exception(exc)
                future.exception()  # retrieved: no "never retrieved" warning
            return
        for host, result in zip(hosts, results, strict=True):
            self._inflight.pop(host).set_result(self._store(host, result, generation))

    async def _read_many(self, hosts: list[str]) -> list[list[Any]]:
        """The lookup script's answer for each host, in one script call."""
        if not hosts:
            return []
        try:
            results: list[list[Any]] = await self._script(args=[self.prefix, *hosts])
        except (RedisError, OSError) as exc:
            self._down_until = time.monotonic() + 0.5
            raise RedisUnavailable(str(exc)) from exc
        self._down_until = 0.0
        return results

    async def preload(self, limit: int = PRELOAD_MAX) -> int:
        """Cache every exact frontend (up to ``limit``) so that a restart starts warm."""
        start = len(f"{self.prefix}frontend:")
        hosts: list[str] = []
        try:
            async for key in self._redis.scan_iter(match=f"{self.prefix}frontend:*", count=1000):
                host = key[start:]
                if not host.startswith("*"):
                    hosts.append(host)
                if len(hosts) >= limit:
                    break
        except (RedisError, OSError) as exc:
            log.warning("cannot preload routes: %s", exc)
            return 0
        loaded = 0
        for i in range(0, len(hosts), BATCH):
            chunk = [h for h in hosts[i : i + BATCH] if h not in self.entries]
            generation = self._generation
            try:
                results = await self._read_many(chunk)
            except RedisUnavailable:
                break
            for host, result in zip(chunk, results, strict=True):
                if host not in self.entries:
                    self._store(host, result, generation)
                    loaded += 1
        return loaded

    def _store(self, host: str, result: list[Any], generation: int) -> Route:
        found, values, dead = result
        key = found or None
        identifier, urls = (values[0], list(values[1:])) if values else ("", [])
        dead_set = {int(d) for d in dead if d.isdigit()}
        old = self.entries.get(host)
        if old is not None and old.key == key and old.urls == urls and old.dead == dead_set:
            route = old  # unchanged: only its freshness moves
        else:
            route = Route(host, key, identifier, urls, dead_set)
        if old is not None and old is not route:
            route.local_dead = old.local_dead
            route.single = route.single and not old.local_dead
        if generation == self._generation:
            # jittered, so that entries read together do not all expire together
            route.fresh_until = time.monotonic() + self.ttl * (0.75 + random.random() / 2)
        if host not in self.entries and len(self.entries) >= self.max_entries:
            self._evict()
        self.entries[host] = route
        return route

    def _evict(self) -> None:
        """Drop the oldest tenth of the entries (random Host headers must not fill memory)."""
        for host in list(itertools.islice(self.entries, max(1, self.max_entries // 10))):
            del self.entries[host]

    async def _refresh_batch(self) -> None:
        """Re-read every queued stale host in one pipeline; on failure keep serving them."""
        await asyncio.sleep(REFRESH_DELAY)  # gather more stale hosts into this batch
        hosts, self._stale = self._stale[:BATCH], self._stale[BATCH:]
        self._flush_scheduled = False
        if self._stale:
            self._flush_scheduled = True
            self._spawn(self._refresh_batch())
        generation = self._generation
        try:
            results = await self._read_many(hosts)
            for host, result in zip(hosts, results, strict=True):
                self._store(host, result, generation)
        except RedisUnavailable:
            retry = time.monotonic() + 1.0
            for host in hosts:
                route = self.entries.get(host)
                if route is not None:  # keep serving it; ask again in a second
                    route.fresh_until = retry
        finally:
            self._refreshing.difference_update(hosts)

    # -- writing -------------------------------------------------------------------

    def mark_dead(self, route: Route, index: int) -> None:
        """Mark backend ``index`` of ``route`` dead for ``dead_ttl`` (only with 2+ backends)."""
        if len(route.backends) < 2:
            return
        route.local_dead[index] = time.monotonic() + self.dead_ttl
        route.single = False
        self._spawn(self._mark(route.host, index))

    async def _mark(self, host: str, index: int) -> None:
        key = f"{self.prefix}dead:{host}"
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.sadd(key, index)
                pipe.expire(key, max(1, round(self.dead_ttl)))
                await pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning("cannot mark backend %d of %s dead: %s", index, host, exc)

    # -- invalidation ----------------------------------------------------------------

    def invalidate(self, hosts: list[str]) -> None:
        """Forget ``hosts``; a wildcard host (or an empty message) forgets everything."""
        self._generation += 1
        if not hosts or any(h.startswith("*") for h in hosts):
            self.entries.clear()
            return
        for host in hosts:
            self.entries.pop(host.lower(), None)

    def mark_all_stale(self) -> None:
        """Refresh every entry on its next use (pub/sub messages may have been missed)."""
        self._generation += 1
        for route in self.entries.values():
            route.fresh_until = 0.0

    def start(self, preload: bool = True) -> None:
        """Start listening on ``<prefix>routes`` (and preload the exact frontends)."""
        self._listener = asyncio.get_running_loop().create_task(self._listen())
        if preload:
            self._spawn(self.preload())

    async def _listen(self) -> None:
        delay = 0.05
        channel = f"{self.prefix}routes"
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(channel)
                self.mark_all_stale()
                self.subscribed.set()
                delay = 0.05
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        self.invalidate(str(message["data"]).split())
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                if self.subscribed.is_set():
                    log.warning("route invalidation channel lost: %s", exc)
                self.subscribed.clear()
                self.mark_all_stale()
            finally:
                try:
                    await pubsub.aclose()
                except (RedisError, OSError):
                    pass
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    def _spawn(self, coro: Coroutine[Any, Any, object]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Stop listening and close the Redis connections."""
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
        for task in list(self._tasks):
            task.cancel()
        await self._redis.aclose()
