"""Pure parts of Hipache's routing: host normalisation, lookup order, backend choice."""

from __future__ import annotations

import functools
import random
from collections.abc import Collection, Sequence
from urllib.parse import urlsplit

Address = tuple[str, int]


def normalize_host(raw: bytes | str | None) -> str | None:
    """The Host header lower-cased, without port or trailing dot; None when empty."""
    if raw is None:
        return None
    host = raw.decode("latin-1") if isinstance(raw, bytes) else raw
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        host = host[: end + 1] if end > 0 else host
    else:
        host = host.partition(":")[0]
    host = host.rstrip(".")
    return host or None


def candidate_keys(host: str) -> list[str]:
    """Frontend names to try, in order: the host, ``*.`` + each parent (longest first), ``*``.

    >>> candidate_keys("a.b.c.com")
    ['a.b.c.com', '*.b.c.com', '*.c.com', '*.com', '*']
    """
    keys = [host]
    rest = host
    while True:
        _, dot, rest = rest.partition(".")
        if not dot or not rest:
            break
        keys.append("*." + rest)
    if host != "*":
        keys.append("*")
    return keys


@functools.lru_cache(maxsize=65536)
def parse_backend(url: str) -> Address | None:
    """``http://127.0.0.1:8000`` -> ("127.0.0.1", 8000); None when unusable."""
    if "://" not in url:
        url = "http://" + url
    try:
        parts = urlsplit(url)
        port = parts.port or 80
    except ValueError:
        return None
    if parts.scheme != "http" or not parts.hostname:
        return None
    return parts.hostname, port


def pick_backend(
    backends: Sequence[Address | None],
    dead: Collection[int],
    tried: Collection[int] = (),
) -> int | None:
    """A random index of a usable backend not dead and not tried yet; None when none is left."""
    live = [
        i
        for i, backend in enumerate(backends)
        if backend is not None and i not in dead and i not in tried
    ]
    if not live:
        return None
    if len(live) == 1:
        return live[0]
    return random.choice(live)
