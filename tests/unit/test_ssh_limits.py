"""The SSH connection limiter's arithmetic, on a fake clock (the server tests drive the real
one with sockets: tests/integration/test_ssh_limits.py)."""

from __future__ import annotations

import pytest

from gitpaas.ssh import limits
from gitpaas.ssh.limits import Limiter, source_of


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("address, source", [
    ("192.0.2.7", "192.0.2.7"),
    ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
    ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
    ("fe80::1%eth0", "fe80::/64"),
    ("::ffff:192.0.2.7", "192.0.2.7"),
    ("not-an-address", "not-an-address"),
])
def test_a_source_is_an_ipv4_address_or_an_ipv6_64(address, source):
    assert source_of(address) == source


def test_caps_in_all_and_per_source():
    lim = Limiter(max_total=3, max_per_source=2, rate=0, burst=0)
    assert lim.admit("192.0.2.1") is None and lim.admit("192.0.2.1") is None
    assert lim.admit("192.0.2.1") == limits.TOO_MANY_FROM_SOURCE
    assert lim.admit("2001:db8::1") is None
    assert lim.admit("2001:db8::2") == limits.TOO_MANY  # the global cap comes first
    assert lim.total == 3 and lim.connections("192.0.2.1") == 2
    lim.release("192.0.2.1")
    assert lim.admit("2001:db8::2") is None
    assert lim.connections("2001:db8::99") == 2  # one /64


def test_zero_means_no_cap():
    lim = Limiter(max_total=0, max_per_source=0, rate=0, burst=0)
    assert all(lim.admit("192.0.2.1") is None for _ in range(1000))
    assert all(lim.reserve("192.0.2.1") == 0.0 for _ in range(1000))


def test_token_bucket_burst_then_waits_then_refuses():
    clock = Clock()
    lim = Limiter(max_total=0, max_per_source=0, rate=4.0, burst=3, clock=clock)
    assert [lim.reserve("192.0.2.1") for _ in range(3)] == [0.0, 0.0, 0.0]
    # The next `burst` wait for their turn, 1/rate apart; the one after is refused.
    assert [lim.reserve("192.0.2.1") for _ in range(3)] == [0.25, 0.5, 0.75]
    assert lim.reserve("192.0.2.1") is None
    assert lim.reserve("192.0.2.2") == 0.0  # another source has its own bucket
    clock.now += 0.25
    assert lim.reserve("192.0.2.1") == 0.75  # one token came back: one more may wait
    clock.now += 10
    assert lim.reserve("192.0.2.1") == 0.0  # refilled, but never above the burst
    assert [lim.reserve("192.0.2.1") for _ in range(2)] == [0.0, 0.0]
    assert lim.reserve("192.0.2.1") == 0.25


def test_one_after_another_is_slowed_never_refused():
    clock = Clock()
    lim = Limiter(max_total=0, max_per_source=0, rate=2.0, burst=2, clock=clock)
    for _ in range(50):
        wait = lim.reserve("192.0.2.1")
        assert wait is not None
        clock.now += wait + 0.01  # the client waits its turn, then connects again
    assert clock.now - 100.0 >= (50 - 2) / 2.0 - 0.01  # 2 a second in the long run


def test_idle_sources_are_forgotten():
    clock = Clock()
    lim = Limiter(max_total=0, max_per_source=0, rate=10.0, burst=2, clock=clock)
    for i in range(3000):
        address = f"10.0.{i // 256}.{i % 256}"
        lim.admit(address)
        lim.reserve(address)
        lim.release(address)
        clock.now += 0.001
    clock.now += 5
    lim.admit("192.0.2.1")
    lim.release("192.0.2.1")
    assert len(lim._sources) < 10
