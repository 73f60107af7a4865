"""The app's routes as Hipache keeps them in Redis.

``<prefix>frontend:<host>`` is a list: element 0 an identifier (the app name), then backend
URLs. ``<prefix>dead:<host>`` is a set of dead backend indexes, written by routers. Every
change is published on ``<prefix>routes`` with the host names as the message, so routers
drop their cached entries at once.

``<prefix>written`` is a set of the hosts whose frontend this instance wrote (kept in the
same MULTI as the frontend): the reconciler removes only those when no app owns them any
more, never a frontend another Hipache tool wrote.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import cast

import redis
from redis.typing import EncodableT

from .errors import ServiceError


def frontend_key(prefix: str, host: str) -> str:
    return f"{prefix}frontend:{host}"


def dead_key(prefix: str, host: str) -> str:
    return f"{prefix}dead:{host}"


def channel(prefix: str) -> str:
    return f"{prefix}routes"


def written_key(prefix: str) -> str:
    return f"{prefix}written"


def edge_key(prefix: str, app: str) -> str:
    """Hash of the app's edge settings, read by the edge with the frontend (element 0 of
    the frontend list names the app)."""
    return f"{prefix}edge:{app}"


class Routes:
    """Reads and atomically swaps Hipache frontends in Redis."""

    def __init__(self, redis_url: str, prefix: str) -> None:
        self.prefix = prefix
        self._redis = redis.Redis.from_url(
            redis_url, socket_timeout=5, socket_connect_timeout=5, decode_responses=True
        )

    def swap(self, app: str, hosts: Iterable[str], backends: Sequence[str]) -> None:
        """Point every host at ``backends`` in one MULTI/EXEC, clear dead marks, publish."""
        hosts = list(hosts)
        try:
            pipe = self._redis.pipeline(transaction=True)
            for host in hosts:
                key = frontend_key(self.prefix, host)
                pipe.delete(key)
                if backends:
                    pipe.rpush(key, app, *backends)
                    pipe.sadd(written_key(self.prefix), host)
                else:
                    pipe.srem(written_key(self.prefix), host)
                pipe.delete(dead_key(self.prefix, host))
            pipe.publish(channel(self.prefix), " ".join(hosts))
            pipe.execute()
        except redis.RedisError as exc:
            raise ServiceError(f"cannot update routes in Redis: {exc}") from exc

    def set_edge_settings(self, app: str, values: Mapping[str, str],
                          hosts: Iterable[str]) -> None:
        """Replace the app's edge settings hash and announce its hosts (the edge re-reads)."""
        try:
            pipe = self._redis.pipeline(transaction=True)
            pipe.delete(edge_key(self.prefix, app))
            if values:
                mapping: dict[EncodableT, EncodableT] = {k: v for k, v in values.items()}
                pipe.hset(edge_key(self.prefix, app), mapping=mapping)
            pipe.publish(channel(self.prefix), " ".join(hosts))
            pipe.execute()
        except redis.RedisError as exc:
            raise ServiceError(f"cannot update edge settings in Redis: {exc}") from exc

    def edge_settings(self, app: str) -> dict[str, str]:
        try:
            # (decode_responses: the client's replies are str, never bytes)
            return cast("dict[str, str]", self._redis.hgetall(edge_key(self.prefix, app)))
        except redis.RedisError as exc:
            raise ServiceError(f"cannot read edge settings from Redis: {exc}") from exc

    def remove(self, hosts: Iterable[str]) -> None:
        """Delete the frontends of ``hosts``."""
        self.swap("", hosts, [])

    def get(self, host: str) -> list[str]:
        """The frontend list of ``host`` (identifier first), empty when none."""
        return self.get_many([host])[host]

    def get_many(self, hosts: Iterable[str]) -> dict[str, list[str]]:
        """The frontend lists of ``hosts`` in one round trip."""
        hosts = list(hosts)
        return dict(zip(hosts, self._read([frontend_key(self.prefix, h) for h in hosts]),
                        strict=True))

    def all(self) -> dict[str, list[str]]:
        """Every frontend of this instance, by host."""
        try:
            keys = list(self._redis.scan_iter(match=frontend_key(self.prefix, "*"), count=1000))
        except redis.RedisError as exc:
            raise ServiceError(f"cannot read routes from Redis: {exc}") from exc
        skip = len(frontend_key(self.prefix, ""))
        return {key[skip:]: value for key, value in zip(keys, self._read(keys), strict=True)}

    def written(self) -> set[str]:
        """Hosts whose frontend this instance wrote (and did not remove since)."""
        try:
            return cast("set[str]", self._redis.smembers(written_key(self.prefix)))
        except redis.RedisError as exc:
            raise ServiceError(f"cannot read routes from Redis: {exc}") from exc

    def _read(self, keys: list[str]) -> list[list[str]]:
        """LRANGE of every key, pipelined: one round trip, not one per key."""
        try:
            pipe = self._redis.pipeline(transaction=False)
            for key in keys:
                pipe.lrange(key, 0, -1)
            return [list(value) for value in pipe.execute()]
        except redis.RedisError as exc:
            raise ServiceError(f"cannot read routes from Redis: {exc}") from exc

    def close(self) -> None:
        self._redis.close()
