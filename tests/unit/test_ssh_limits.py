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


# -- MaxStartups: unauthenticated connections across all sources ---------------------------


@pytest.mark.parametrize("text, parsed", [
    ("10:30:100", limits.Startups(10, 30, 100)),
    ("5", limits.Startups(5, 100, 5)),
    ("0", limits.Startups(0, 100, 0)),
    (" 3:0:3 ", limits.Startups(3, 0, 3)),
])
def test_max_startups_parses_like_openssh(text, parsed):
    assert limits.Startups.parse(text) == parsed


@pytest.mark.parametrize("text", ["", "10:30", "10:30:100:1", "100:30:10", "1:101:5", "-1",
                                  "a:b:c", "1.5", "١٠"])
def test_max_startups_rejects_anything_else(text):
    with pytest.raises(ValueError):
        limits.Startups.parse(text)


def test_drop_chance_rises_from_rate_at_start_to_certain_at_full():
    s = limits.Startups(10, 30, 100)
    assert [s.drop_chance(n) for n in (0, 9)] == [0.0, 0.0]
    assert s.drop_chance(10) == pytest.approx(0.30)
    assert s.drop_chance(55) == pytest.approx(0.65)
    assert s.drop_chance(100) == s.drop_chance(1000) == 1.0
    assert limits.Startups(0, 100, 0).drop_chance(10**6) == 0.0  # off


def test_unauthenticated_connections_are_dropped_at_random_authenticated_ones_never():
    rolls = iter([0.9, 0.1, 0.6, 0.8])  # the "random" numbers admit() draws, in turn
    lim = Limiter(max_total=0, max_per_source=0, rate=0, burst=0,
                  startups=limits.Startups(2, 50, 4), chance=lambda: next(rolls))
    assert lim.admit("192.0.2.1") is None  # below START: no roll
    assert lim.admit("192.0.2.2") is None
    assert lim.admit("192.0.2.3") is None  # 50 %, rolled 0.9: let in
    assert lim.admit("192.0.2.4") == limits.TOO_MANY_STARTUPS  # 75 %, rolled 0.1
    assert (lim.unauthenticated, lim.total) == (3, 3)
    lim.authenticated()  # one logged in: it keeps its slot and no longer counts
    assert (lim.unauthenticated, lim.total) == (2, 3)
    assert lim.admit("192.0.2.5") is None  # 50 %, rolled 0.6
    assert lim.admit("192.0.2.6") is None  # 75 %, rolled 0.8
    assert lim.admit("192.0.2.7") == limits.TOO_MANY_STARTUPS  # FULL: 100 %, no roll
    lim.release("192.0.2.1", authenticated=True)
    for n in (2, 3, 5, 6):
        lim.release(f"192.0.2.{n}")
    assert (lim.unauthenticated, lim.total) == (0, 0)
    assert lim.admit("192.0.2.8") is None  # the flood is over: in again
