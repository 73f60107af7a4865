"""The tests' webhook receiver (``tests/webhook.py``, used by the hooks and operations
e2e tests) against the shipped notifier hook, run as gitpaas runs it."""

from __future__ import annotations

from gitpaas.hooks import hook_dirs, run_hooks
from tests.webhook import webhook_receiver


def test_the_shipped_notifier_posts_to_the_receiver():
    lines: list[str] = []
    with webhook_receiver("/ops") as (url, received):
        assert url.startswith("http://127.0.0.1:") and url.endswith("/ops")
        run_hooks(hook_dirs(url, ""), "notify", {"kind": "disk-full", "app": "shop"},
                  lines.append, {"GITPAAS_WEBHOOK_URL": url})
    assert received == [{"event": "notify", "kind": "disk-full", "app": "shop"}]
    assert any("notified (204)" in line for line in lines), lines
