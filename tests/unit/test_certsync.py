"""The pure parts of edge/certsync.py (the rest: tests/integration/test_edge_certsync.py)."""

from __future__ import annotations

import pytest

from gitpaas.edge.certsync import check_entry, digest, open_redis_warning
from gitpaas.errors import InvalidInput
from tests.pebblekit import make_ca_and_cert


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379/0", "redis://localhost/1",
                                 "redis://[::1]:6379", "redis://:secret@10.0.0.1:6379/0",
                                 "redis://gitpaas:secret@redis.internal/0",
                                 "unix:///run/redis/redis.sock"])
def test_no_warning_for_loopback_or_a_password(url):
    assert open_redis_warning(url) is None


@pytest.mark.parametrize("url", ["redis://10.0.0.1:6379/0", "redis://redis.internal/0"])
def test_a_networked_redis_without_password_is_warned_about(url):
    warning = open_redis_warning(url)
    assert warning and "no password" in warning and "docs/security.md" in warning


def test_entries_are_checked_before_anything_is_written():
    _, pem, key = make_ca_and_cert(["a.example.test", "*.w.example.test"])
    assert check_entry("a.example.test", pem, key).info.names[0] == "a.example.test"
    assert check_entry("x.w.example.test", pem, key)
    assert check_entry("*.w.example.test", pem, key)
    _, _, other = make_ca_and_cert(["a.example.test"])
    cases = {("a.example.test", pem, other): "does not match",
             ("b.example.test", pem, key): "does not cover",
             ("../a.example.test", pem, key): "invalid host name",
             ("a.example.test", pem + b"x" * 300_000, key): "larger than",
             ("a.example.test", b"junk", key): "no PEM certificate"}
    for (host, chain, k), message in cases.items():
        with pytest.raises(InvalidInput, match=message):
            check_entry(host, chain, k)


def test_the_digest_tells_chain_from_key():
    assert digest(b"ab", b"c") != digest(b"a", b"bc")
    assert digest(b"a", b"b") == digest(b"a", b"b")
