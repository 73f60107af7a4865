"""Issue 11, findings 5 and 9 over real ssh: limits are ceilings, digits are ASCII digits,
events belong to an app's identity."""

from __future__ import annotations


def one_line_error(result, *expected: str) -> str:
    assert result.returncode == 1, result
    # "-----> Waiting for APP: reconcile" may come first when the reconciler holds the lock.
    lines = [x for x in result.stderr.splitlines() if not x.startswith("-----> Waiting")]
    assert len(lines) == 1 and lines[0].startswith(" !     "), result.stderr
    assert "internal error" not in lines[0]
    for text in expected:
        assert text in lines[0], result.stderr
    return lines[0]


def test_a_tenant_cannot_lift_the_admins_limits(server):
    mal = server.add_key("mal-limits")
    assert server.ssh("apps:create", "mal", key=mal).returncode == 0
    for argv, expected in (
            (["--memory", "0"], "--memory unlimited is above the ceiling of 512m"),
            (["--memory", "0", "--cpus", "0"], "above the ceiling"),
            (["--memory", "1g"], "--memory 1g is above the ceiling of 512m"),
            (["--process", "web", "--memory", "513m"], "above the ceiling")):
        one_line_error(server.ssh("resources:set", "mal", *argv, key=mal), expected)
    assert server.ssh("resources:set", "mal", "--memory", "256m", key=mal).returncode == 0
    assert "memory 256m" in server.ssh("resources", "mal", key=mal).stdout
    # Admins may go above the ceiling (and lift it).
    assert server.ssh("resources:set", "mal", "--memory", "0").returncode == 0
    assert "memory unlimited" in server.ssh("resources", "mal", key=mal).stdout


def test_a_tenant_cannot_scale_past_max_replicas(server):
    mal = server.add_key("mal-scale")
    assert server.ssh("apps:create", "malscale", key=mal).returncode == 0
    one_line_error(server.ssh("ps:scale", "malscale", "web=20", key=mal),
                   "malscale would run 20 containers; at most 10")
    one_line_error(server.ssh("ps:scale", "malscale", "web=5", "worker=6", key=mal),
                   "would run 11 containers")
    assert server.ssh("ps:scale", "malscale", "web=4", "worker=6", key=mal).returncode == 0
    one_line_error(server.ssh("ps:scale", "malscale", "web=5", key=mal), "at most 10")
    # Admins decide more (no release: the formation is stored, nothing starts); the
    # tenant may then scale down, not up.
    assert server.ssh("ps:scale", "malscale", "web=12").returncode == 0
    one_line_error(server.ssh("ps:scale", "malscale", "worker=7", key=mal), "at most 10")
    assert server.ssh("ps:scale", "malscale", "worker=2", key=mal).returncode == 0


def test_counts_take_ascii_digits_only(server):
    mal = server.add_key("mal-digits")
    assert server.ssh("apps:create", "digits", key=mal).returncode == 0
    for argv in (["ps:scale", "digits", "web=²"], ["ps:scale", "digits", "web=٣"],
                 ["logs", "digits", "-n", "²"], ["releases", "digits", "-n", "²"],
                 ["events", "digits", "-n", "²"], ["events", "-n", "²"],
                 ["logs", "digits", "-n", "٣"], ["resources:set", "digits", "--cpus", "٣"],
                 ["resources:set", "digits", "--cpus", "nan"],
                 ["rollback", "digits", "v٣"]):
        one_line_error(server.ssh(*argv, key=mal))


def test_events_of_a_destroyed_app_stay_with_it(server):
    """A new owner of a destroyed app's name sees none of the previous owner's history."""
    victim, mal = server.add_key("victim-ev"), server.add_key("mal-ev")
    assert server.ssh("apps:create", "oldapp", key=victim).returncode == 0
    assert server.ssh("config:set", "oldapp", "PRIVATE_KEY_NAME=x", key=victim).returncode == 0
    assert server.ssh("domains:add", "oldapp", "secret-project.example",
                      key=victim).returncode == 0
    assert server.ssh("apps:destroy", "oldapp", "--confirm", "oldapp",
                      key=victim).returncode == 0
    assert server.ssh("apps:create", "oldapp", key=mal).returncode == 0
    for argv in (["events", "oldapp"], ["events"]):
        shown = server.ssh(*argv, key=mal)
        assert shown.returncode == 0, shown.stderr
        assert "PRIVATE_KEY_NAME" not in shown.stdout and "secret-project" not in shown.stdout
        assert "victim-ev" not in shown.stdout
    assert "apps:create" in server.ssh("events", "oldapp", key=mal).stdout
    # Admins still see the whole trail.
    assert "secret-project.example" in server.ssh("events").stdout
