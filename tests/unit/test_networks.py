"""Subnet choice of the per-app networks (issue 11, finding 4)."""

from __future__ import annotations

import ipaddress
import random
import time

from gitpaas.build.sandbox import chain_rules
from gitpaas.runtime.network import bridge_name, free_subnet, free_subnets, host_routes

N = ipaddress.IPv4Network


def test_the_first_subnet_that_overlaps_nothing():
    pool = N("10.213.0.0/16")
    used = [N("10.213.0.0/26"), N("10.213.0.128/25"), N("172.17.0.0/16")]
    assert free_subnet(pool, 26, used) == N("10.213.0.64/26")
    assert free_subnet(pool, 26, [N("10.0.0.0/8")]) is None  # a host route covers the pool


def reference_free_subnets(pool, prefix, used):
    """The definition: every candidate checked against every used subnet (the old code)."""
    return [c for c in pool.subnets(new_prefix=prefix) if not any(c.overlaps(u) for u in used)]


def test_free_subnets_agree_with_the_definition():
    rng = random.Random(17)
    pool = N("10.213.0.0/16")
    for _ in range(300):
        prefix = rng.choice([16, 18, 24, 26, 29])
        used = []
        for _ in range(rng.randint(0, 40)):
            near = int(pool.network_address) + rng.randint(-2**17, 2**17)
            address = rng.choice([rng.randrange(2**32), near % 2**32])
            used.append(ipaddress.ip_network((address, rng.randint(8, 30)), strict=False))
        assert free_subnets(pool, prefix, used) == reference_free_subnets(pool, prefix, used)


def test_choosing_a_subnet_stays_cheap_with_hundreds_of_networks():
    """With 1,000 networks in a /16 of /26s the choice took ~0.7 s (each candidate checked
    against each network with ipaddress); every new app's first deploy paid it."""
    pool = N("10.213.0.0/16")
    used = list(pool.subnets(new_prefix=26))[:1000]
    started = time.process_time()
    assert free_subnet(pool, 26, used) == N("10.213.250.0/26")
    assert time.process_time() - started < 0.05


def test_host_routes_skip_the_default_route(tmp_path):
    table = tmp_path / "route"
    table.write_text(
        "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n"
        "eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
        "docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n")
    assert host_routes(table) == [N("172.17.0.0/16")]


def test_bridge_names_fit_linux_and_tell_apps_from_builds():
    assert len(bridge_name("t1234567.some-long-app-name-here")) == 15
    assert bridge_name("a").startswith("gpa") and bridge_name("a", "gpb").startswith("gpb")


def test_build_chain_drops_the_host_first_and_lets_the_rest_through():
    rules = chain_rules("10.213.0.0/16")
    assert rules[0] == ["-d", "10.213.0.0/16", "-j", "DROP"]  # apps: not even DNS
    assert rules[1:3] == [["-p", "udp", "--dport", "53", "-j", "RETURN"],
                          ["-p", "tcp", "--dport", "53", "-j", "RETURN"]]  # DNS only
    assert rules[3] == ["-m", "addrtype", "--dst-type", "LOCAL", "-j", "DROP"]
    assert ["-d", "169.254.0.0/16", "-j", "DROP"] in rules
    assert rules[-1] == ["-j", "RETURN"]
