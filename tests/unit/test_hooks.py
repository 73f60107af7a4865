"""Lifecycle hooks: order, payload, failure and a hook that hangs."""

from __future__ import annotations

import json
import time

import pytest

from gitpaas.errors import DeployError
from gitpaas.hooks import hook_files, run_hooks


def hook(directory, event, name, body):
    folder = directory / event
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def test_hooks_run_in_name_order_with_the_event_on_stdin(tmp_path):
    hook(tmp_path, "pre-build", "20-second", 'echo "second $APP"\n')
    hook(tmp_path, "pre-build", "10-first", "cat\n")
    lines: list[str] = []
    run_hooks([tmp_path], "pre-build", {"app": "shop", "release": 2}, lines.append)
    event = json.loads(lines[0].strip())
    assert event == {"event": "pre-build", "app": "shop", "release": 2}
    assert lines[1].strip() == "second shop"
    assert [p.name for p in hook_files([tmp_path], "pre-build")] == ["10-first", "20-second"]


def test_a_failing_pre_hook_aborts_with_its_last_line(tmp_path):
    hook(tmp_path, "pre-release", "10-no", "echo checking; echo 'not today'; exit 3\n")
    with pytest.raises(DeployError, match="pre-release hook 10-no failed: not today"):
        run_hooks([tmp_path], "pre-release", {"app": "shop"}, lambda line: None)


def test_a_hook_that_hangs_is_killed_at_the_deadline(tmp_path):
    hook(tmp_path, "pre-build", "10-hang", "echo started; sleep 60 & sleep 60\n")
    started = time.monotonic()
    with pytest.raises(DeployError, match="timed out after 1s"):
        run_hooks([tmp_path], "pre-build", {"app": "shop"}, lambda line: None, timeout=1)
    assert time.monotonic() - started < 10
