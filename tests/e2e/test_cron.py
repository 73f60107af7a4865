"""Cron jobs of app.json, end to end: a job every minute runs in a one-off container of
the current release, its output is in ``logs -p cron``; a bad schedule fails the push."""

from __future__ import annotations

import json

import pytest

from tests.e2e.test_push import httpd_app
from tests.harness import commit_files, make_repo, serving, wait_for

pytestmark = pytest.mark.timeout(600)


def test_a_job_every_minute_runs_and_logs(tmp_path, redis_url, docker_client, clients,
                                          busybox_image):
    with serving(tmp_path, redis_url, docker_client, "c",
                 {"GITPAAS_CRON_INTERVAL": "1"}) as server:
        files = {**httpd_app(busybox_image, "hi\n"), "app.json": json.dumps(
            {"cron": [{"command": "echo cron ran with $GREETING", "schedule": "* * * * *"}]})}
        repo = make_repo(tmp_path / "cronapp", files)
        assert server.ssh("apps:create", "cronapp").returncode == 0
        assert server.ssh("config:set", "cronapp", "GREETING=salut").returncode == 0
        pushed = server.push(repo, "cronapp")
        assert pushed.returncode == 0, pushed.stderr
        listed = json.loads(server.ssh("cron", "cronapp", "--json").stdout)
        assert [(j["schedule"], j["command"]) for j in listed] == [
            ("* * * * *", "echo cron ran with $GREETING")]

        def finished() -> dict:
            state = json.loads(server.ssh("cron", "cronapp", "--json").stdout)[0]
            return state if state["status"] not in (None, "running") else {}

        # The run is recorded after its container is gone (its lines archived first); its
        # line shows in the logs while it runs already.
        state = wait_for(finished, 90, "the cron job's run to be recorded", interval=1)
        assert state["status"] == "succeeded" and state["last_run"], server.log()[-3000:]
        logs = server.ssh("logs", "cronapp", "-p", "cron").stdout
        assert "cron.1 | cron ran with salut" in logs, server.log()[-3000:]
        # Its container is gone; the app's own containers are untouched.
        oneoffs = docker_client.containers.list(all=True, filters={"label": [
            f"gitpaas.instance={server.instance}", "gitpaas.process=cron"]})
        assert oneoffs == []

        commit_files(repo, {"app.json": json.dumps(
            {"cron": [{"command": "true", "schedule": "61 * * * *"}]})}, "bad schedule")
        refused = server.push(repo, "cronapp")
        assert refused.returncode != 0
        assert "cron schedule '61 * * * *' does not parse" in refused.stderr
