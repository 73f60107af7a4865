"""Unit tests of the router's pure lookup rules (Hipache's order)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gitpaas.router.lookup import candidate_keys, normalize_host, parse_backend, pick_backend


def test_candidate_keys_order():
    assert candidate_keys("a.b.c.com") == ["a.b.c.com", "*.b.c.com", "*.c.com", "*.com", "*"]
    assert candidate_keys("localhost") == ["localhost", "*"]
    assert candidate_keys("example.com") == ["example.com", "*.com", "*"]


labels = st.lists(st.from_regex(r"[a-z0-9]{1,8}", fullmatch=True), min_size=1, max_size=6)


@given(labels)
def test_candidate_keys_properties(parts):
    host = ".".join(parts)
    keys = candidate_keys(host)
    assert keys[0] == host and keys[-1] == "*"
    assert len(keys) == len(parts) + 1
    wildcards = keys[1:-1]
    assert all(k.startswith("*.") and host.endswith(k[1:]) for k in wildcards)
    assert [len(k) for k in wildcards] == sorted((len(k) for k in wildcards), reverse=True)


def test_normalize_host():
    assert normalize_host(b"Example.COM:8080") == "example.com"
    assert normalize_host(b"example.com.") == "example.com"
    assert normalize_host(b"[::1]:80") == "[::1]"
    assert normalize_host("  a.b  ") == "a.b"
    assert normalize_host(b"") is None
    assert normalize_host(b":80") is None
    assert normalize_host(None) is None


def test_parse_backend():
    assert parse_backend("http://127.0.0.1:8000") == ("127.0.0.1", 8000)
    assert parse_backend("http://10.0.0.2") == ("10.0.0.2", 80)
    assert parse_backend("127.0.0.1:9000") == ("127.0.0.1", 9000)
    assert parse_backend("https://x:1") is None
    assert parse_backend("http://x:notaport") is None


def test_pick_backend_skips_dead_tried_and_invalid():
    backends = [("h", 1), None, ("h", 3), ("h", 4)]
    assert pick_backend(backends, dead={0, 3}) == 2
    assert pick_backend(backends, dead={0}, tried=[2, 3]) is None
    assert pick_backend([], dead=set()) is None
    picks = {pick_backend(backends, dead=set()) for _ in range(200)}
    assert picks == {0, 2, 3}
