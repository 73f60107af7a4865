"""Subnet choice of the per-app networks (issue 11, finding 4)."""

from __future__ import annotations

import ipaddress

from gitpaas.build.sandbox import chain_rules
from gitpaas.runtime.network import bridge_name, free_subnet, host_routes

N = ipaddress.IPv4Network


def test_the_first_subnet_that_overlaps_nothing():
    pool = N("10.213.0.0/16")
    used = [N("10.213.0.0/26"), N("10.213.0.128/25"), N("172.17.0.0/16")]
    assert free_subnet(pool, 26, used) == N("10.213.0.64/26")
    assert free_subnet(pool, 26, [N("10.0.0.0/8")]) is None  # a host route covers the pool


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
