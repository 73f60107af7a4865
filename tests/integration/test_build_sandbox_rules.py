"""Issue 17: the build sandbox's rules are checked with one ``iptables -S`` per build when
they are in place, and repaired by the full check when anything is missing."""

from __future__ import annotations

import subprocess

import pytest

from gitpaas.build import sandbox as sandbox_mod
from gitpaas.build.sandbox import HOOKS, BuildSandbox, chain_rules, listed_rule


@pytest.fixture
def box(docker_client, instance):
    sb = BuildSandbox(docker_client, instance, "10.213.0.0/16", 24)
    yield sb
    sb.remove()


def iptables_calls(monkeypatch) -> list[list[str]]:
    calls: list[list[str]] = []
    real = subprocess.run

    def spy(argv, *args, **kwargs):
        calls.append(list(argv))
        return real(argv, *args, **kwargs)

    monkeypatch.setattr(sandbox_mod.subprocess, "run", spy)
    return calls


def chain_listing(sb: BuildSandbox) -> list[str]:
    out = subprocess.run(["iptables", "-w", "5", "-S", sb.chain], capture_output=True,
                         text=True, check=True).stdout
    return [line for line in out.splitlines() if line.startswith("-A ")]


def expected(sb: BuildSandbox) -> list[str]:
    return [f"-A {sb.chain} {' '.join(listed_rule(r))}" for r in chain_rules(str(sb.pool))]


def test_rules_in_place_cost_one_iptables_run(box, monkeypatch):
    box.ensure()
    assert chain_listing(box) == expected(box)
    calls = iptables_calls(monkeypatch)
    box.ensure()
    assert calls == [["iptables", "-w", "5", "-S"]]


def test_a_missing_rule_is_put_back_in_its_place(box, monkeypatch):
    box.ensure()
    subprocess.run(["iptables", "-w", "5", "-D", box.chain, "2"], check=True)  # DNS/udp
    assert chain_listing(box) != expected(box)
    calls = iptables_calls(monkeypatch)
    box.ensure()
    assert len(calls) > 1  # the full check ran
    assert chain_listing(box) == expected(box)


@pytest.mark.parametrize("hook", HOOKS)
def test_a_missing_jump_is_put_back(box, hook):
    box.ensure()
    jump = ["-i", box.bridge, "-j", box.chain]
    subprocess.run(["iptables", "-w", "5", "-D", hook, *jump], check=True)
    box.ensure()
    assert subprocess.run(["iptables", "-w", "5", "-C", hook, *jump]).returncode == 0


def test_listed_rule_spells_port_matches_as_iptables_does():
    assert listed_rule(["-p", "udp", "--dport", "53", "-j", "RETURN"]) == \
        ["-p", "udp", "-m", "udp", "--dport", "53", "-j", "RETURN"]
    assert listed_rule(["-d", "10.0.0.0/8", "-j", "DROP"]) == ["-d", "10.0.0.0/8", "-j", "DROP"]
