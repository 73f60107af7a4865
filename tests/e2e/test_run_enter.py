"""run and enter over the real OpenSSH client: exit status, config, stdin, ptys, audit."""

from __future__ import annotations

import subprocess
import time

import pytest

from tests.e2e.test_push import httpd_app
from tests.harness import make_repo

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def app(server, busybox_image, tmp_path_factory):
    repo = make_repo(tmp_path_factory.mktemp("runapp"), httpd_app(busybox_image, "hi\n"))
    pushed = server.push(repo, "runapp")
    assert pushed.returncode == 0, pushed.stderr
    assert server.ssh("config:set", "runapp", "GREETING=bonjour").returncode == 0
    return "runapp"


def oneoffs(docker_client, instance: str) -> list[str]:
    return [c.name for c in docker_client.containers.list(
        all=True, filters={"label": [f"gitpaas.instance={instance}", "gitpaas.oneoff=run"]})]


def test_run_returns_the_exit_status_and_sees_config(server, app, docker_client):
    result = server.ssh("run", app, "--", "sh", "-c", "'echo $GREETING $DYNO; exit 7'")
    assert result.returncode == 7, result.stderr
    assert result.stdout == "bonjour run.1\n"
    assert oneoffs(docker_client, server.instance) == []  # removed afterwards


def test_run_passes_stdin_and_binary_output(server, app):
    data = "line one\nline two\n"
    result = server.ssh("run", app, "--", "cat", input=data)
    assert result.returncode == 0 and result.stdout == data, result.stderr
    raw = subprocess.run([*server.ssh_command(), "git@127.0.0.1", "run", app, "--", "printf",
                          "'\\377\\000\\n'"], capture_output=True, timeout=60)
    assert raw.returncode == 0 and raw.stdout == b"\xff\x00\n"


def test_run_arguments_are_not_a_shell_string(server, app):
    result = server.ssh("run", app, "--", "echo", "'$GREETING; id'")
    assert result.returncode == 0 and result.stdout == "$GREETING; id\n"


def test_run_needs_the_separator_and_is_audited_without_values(server, app):
    result = server.ssh("run", app, "echo", "hi")
    assert result.returncode == 1 and "give the command after --" in result.stderr
    server.ssh("run", app, "--", "true")
    events = server.ssh("events", app).stdout
    assert "run" in events and "true" in events and "bonjour" not in events


def test_run_over_a_pty_and_enter_web_1(server, app):
    tty = subprocess.run([*server.ssh_command(), "-tt", "git@127.0.0.1", "run", app, "--tty",
                          "--", "tty"], capture_output=True, text=True, timeout=60)
    assert tty.returncode == 0 and "/dev/pts/" in tty.stdout, tty.stderr
    entered = subprocess.run([*server.ssh_command(), "-tt", "git@127.0.0.1", "enter", app,
                              "web.1", "--", "id"], capture_output=True, text=True, timeout=60)
    assert entered.returncode == 0 and "uid=0(root)" in entered.stdout, entered.stderr
    # Without a pty, enter still runs the command and returns its status.
    plain = server.ssh("enter", app, "--", "sh", "-c", "'hostname; exit 3'")
    assert plain.returncode == 3 and plain.stdout.startswith(f"{app}-web-1")
    assert server.ssh("enter", app, "web.9", "--", "id").returncode == 1


def test_a_long_run_outlives_reconciler_passes(server, app):
    started = time.monotonic()
    result = server.ssh("run", app, "--", "sh", "-c", "'sleep 7; echo done'")
    assert result.returncode == 0 and result.stdout == "done\n", result.stderr
    assert time.monotonic() - started >= 7


def test_strangers_and_deploy_keys_cannot_run_or_enter(server, app, tmp_path):
    stranger = server.add_key("runstranger")
    for argv in (["run", app, "--", "id"], ["enter", app, "--", "id"]):
        result = server.ssh(*argv, key=stranger)
        assert result.returncode == 1
        assert f"no app named '{app}', or you may not use it" in result.stderr
