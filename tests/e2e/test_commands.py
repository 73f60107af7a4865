"""Every command through the real OpenSSH client against ``gitpaas serve`` (one pushed app,
reused by the tests of this module in order), plus the local CLI and ``paas``."""

from __future__ import annotations

import base64
import json
import os
import shlex
import subprocess

import pytest

from tests.harness import VENV_BIN, git, make_repo, wait_for

pytestmark = pytest.mark.timeout(600)

PROCFILE = ('web: echo "web says $GREETING"; exec httpd -f -p 5000 -h /www\n'
            'worker: while true; do echo "tick $GREETING"; sleep 1; done\n')
TRICKY = "a=b $HOME 'single' \"double\" ünïcødé  spaces  ;|&"


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, (result.stdout, result.stderr)
    return result.stdout


def ssh_json(server, *args: str, key=None):
    return json.loads(ok(server.ssh(*args, "--json", key=key)))


@pytest.fixture(scope="module")
def shop(server, busybox_image, tmp_path_factory):
    """The app ``shop`` at v1 with web and worker process types (worker at 0)."""
    repo = make_repo(tmp_path_factory.mktemp("repo") / "shop", {
        "Dockerfile": f"FROM {busybox_image}\nCOPY index.html /www/index.html\n",
        "index.html": "hello\n", "Procfile": PROCFILE})
    result = server.push(repo, "shop")
    assert result.returncode == 0, result.stderr
    return repo


def containers(docker_client, server, app: str = "shop", running: bool = True) -> list:
    label = [f"gitpaas.instance={server.instance}", f"gitpaas.app={app}"]
    # A container retired between Docker's listing and its inspection is skipped.
    found = docker_client.containers.list(all=not running, filters={"label": label},
                                          ignore_removed=True)
    return sorted(found, key=lambda c: c.name)


def env_of(container) -> dict[str, str]:
    return dict(e.split("=", 1) for e in container.attrs["Config"]["Env"])


def web_backends(docker_client, server) -> list[str]:
    """Where the router must reach each running web container: its address on its app's
    bridge (the default ``container_host`` publishes no port: issue 17, scale)."""
    found = []
    for c in containers(docker_client, server):
        networks = c.attrs["NetworkSettings"]["Networks"] or {}
        app = networks.get(server.network_of(c.labels["gitpaas.app"])) or {}
        if c.labels["gitpaas.process"] == "web" and app.get("IPAddress"):  # none stopped
            found.append(f"http://{app['IPAddress']}:5000")
    return sorted(found)


def frontend(server, host: str) -> list[str]:
    routes = ssh_json(server, "routes")
    return routes.get(f"{server.instance}:frontend:{host}", [])


def test_config_values_round_trip_and_make_releases(server, shop, docker_client):
    out = ok(server.ssh("config:set", "shop", shlex.quote(f"TRICKY={TRICKY}"),
                        "GREETING=hi"))
    assert out.strip() == "Setting TRICKY, GREETING and restarting shop... done, v2"
    assert ok(server.ssh("config:get", "shop", "TRICKY")) == TRICKY + "\n"
    assert ssh_json(server, "config", "shop") == {"GREETING": "hi", "TRICKY": TRICKY}
    # the new release runs with the new config
    web = [c for c in containers(docker_client, server) if ".v2.web." in c.name]
    assert web and env_of(web[0])["TRICKY"] == TRICKY
    # multi-line values travel base64-encoded
    pem = "-----BEGIN X-----\nabc\n-----END X-----\n"
    ok(server.ssh("config:set", "shop", "--no-restart", "--encoded",
                  "PEM=" + base64.b64encode(pem.encode()).decode()))
    got = ok(server.ssh("config:get", "shop", "PEM", "--encoded")).strip()
    assert base64.b64decode(got).decode() == pem
    out = ok(server.ssh("config:unset", "shop", "PEM", "TRICKY"))
    assert out.strip() == "Unsetting PEM, TRICKY and restarting shop... done, v3"
    assert ssh_json(server, "config", "shop") == {"GREETING": "hi"}
    missing = server.ssh("config:get", "shop", "NOPE")
    assert missing.returncode == 1 and missing.stderr == " !     shop has no config var NOPE\n"
    releases = ssh_json(server, "releases", "shop")
    assert [(r["version"], r["description"], r["created_by"]) for r in releases][:3] == [
        (3, "Unset PEM, TRICKY", "admin"), (2, "Set TRICKY, GREETING", "admin"),
        (1, f"Deploy {git(shop, 'rev-parse', '--short=7', 'HEAD').stdout.strip()}", "admin")]
    assert releases[0]["current"] and releases[0]["status"] == "succeeded"
    text = ok(server.ssh("releases", "shop"))
    assert "v3" in text and "Unset PEM, TRICKY" in text and "current" in text


def test_scale_ps_and_routes(server, shop, docker_client):
    out = ok(server.ssh("ps:scale", "shop", "web=2", "worker=1"))
    assert out.strip() == "Scaling shop to web=2 worker=1... done, v4"
    assert wait_for(lambda: len(containers(docker_client, server)) == 3)
    ps = ssh_json(server, "ps", "shop")
    assert ps["formation"] == {"web": 2, "worker": 1} and ps["release"] == 4
    assert sorted((p["name"], p["state"], p["release"]) for p in ps["processes"]) == [
        ("web.1", "running", 4), ("web.2", "running", 4), ("worker.1", "running", 4)]
    assert all(p["port"] for p in ps["processes"] if p["process"] == "web")
    text = ok(server.ssh("ps", "shop"))
    assert "=== shop (v4): web=2 worker=1" in text and "worker.1" in text and "up " in text
    # the routes point exactly at the two web containers
    assert sorted(frontend(server, "shop.paas.localhost")[1:]) == web_backends(docker_client,
                                                                               server)
    assert frontend(server, "shop.paas.localhost")[0] == "shop"
    assert f"{server.instance}:frontend:shop.paas.localhost" in ok(server.ssh("routes", "shop"))
    bad = server.ssh("ps:scale", "shop", "cron=1")
    assert bad.returncode == 1 and "has no process type cron" in bad.stderr
    ok(server.ssh("ps:scale", "shop", "web=1"))
    assert len(frontend(server, "shop.paas.localhost")) == 2


def test_logs_interleave_and_survive_a_restart(server, shop, docker_client):
    assert wait_for(lambda: "worker.1 | tick hi" in ok(server.ssh("logs", "shop")), 60)
    out = ok(server.ssh("ps:restart", "shop"))
    assert out.strip() == "Restarting shop... done, v6"
    old = wait_for(lambda: not [c for c in containers(docker_client, server, running=False)
                                if ".v5." in c.name])
    assert old, "v5 containers were not retired"
    lines = ok(server.ssh("logs", "shop", "-n", "1000")).splitlines()
    assert "web.1 | web says hi" in lines
    # the old worker's lines (v5, now removed) are still there, before the new ones
    assert lines.count("web.1 | web says hi") >= 2
    workers = ok(server.ssh("logs", "shop", "-p", "worker", "-n", "3")).splitlines()
    assert len(workers) == 3 and all(li.startswith("worker.1 | tick") for li in workers)
    # -t streams new lines until the client goes away
    proc = subprocess.Popen([*server.ssh_command(), "git@127.0.0.1", "logs", "shop", "-t",
                             "-p", "worker", "-n", "1"], stdout=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        second = proc.stdout.readline()
        assert first.startswith("worker.1 | tick") and second.startswith("worker.1 | tick")
    finally:
        proc.terminate()
        proc.wait(10)
    assert ok(server.ssh("version")).startswith("gitpaas ")  # the server is still fine


def test_stop_start(server, shop, docker_client):
    assert ok(server.ssh("ps:stop", "shop")).strip() == "Stopping shop... done"
    assert containers(docker_client, server, running=False) == []
    assert frontend(server, "shop.paas.localhost") == []
    assert "no processes running" in ok(server.ssh("ps", "shop"))
    assert ok(server.ssh("ps:start", "shop")).strip() == "Starting shop... done, v6"
    assert len(containers(docker_client, server)) == 2
    assert frontend(server, "shop.paas.localhost")[1:] == web_backends(docker_client, server)


def test_rollback(server, shop, docker_client):
    out = ok(server.ssh("rollback", "shop", "v1"))
    assert out.strip() == "Rolling back shop to v1... done, v7"
    assert ssh_json(server, "config", "shop") == {}
    assert ssh_json(server, "releases", "shop")[0]["description"] == "Rollback to v1"
    web = [c for c in containers(docker_client, server) if ".v7.web." in c.name]
    assert web and "GREETING" not in env_of(web[0])
    # without a version: the release before the current one (v6, config GREETING=hi)
    assert ok(server.ssh("rollback", "shop")).strip() == "Rolling back shop to v6... done, v8"
    assert ssh_json(server, "config", "shop") == {"GREETING": "hi"}
    bad = server.ssh("rollback", "shop", "v99")
    assert bad.returncode == 1 and "shop has no release v99" in bad.stderr


def test_domains(server, shop, docker_client):
    ok(server.ssh("apps:create", "blog"))
    assert ok(server.ssh("domains:add", "shop", "www.shop.test")).strip() == \
        "Adding www.shop.test to shop... done"
    assert ssh_json(server, "domains", "shop") == {"default": "shop.paas.localhost",
                                                    "domains": ["www.shop.test"]}
    assert frontend(server, "www.shop.test") == frontend(server, "shop.paas.localhost")
    assert len(frontend(server, "www.shop.test")) == 2
    for host in ("www.shop.test", "shop.paas.localhost"):
        taken = server.ssh("domains:add", "blog", host)
        assert taken.returncode == 1 and f"{host} is taken by another app" in taken.stderr
    bad = server.ssh("domains:add", "shop", "Not_A_Host")
    assert bad.returncode == 1 and "invalid host name" in bad.stderr
    # a deploy keeps the extra domain routed
    ok(server.ssh("ps:restart", "shop"))
    assert wait_for(lambda: frontend(server, "www.shop.test")[1:]
                    == web_backends(docker_client, server))  # once the old one is retired
    ok(server.ssh("domains:remove", "shop", "www.shop.test"))
    assert frontend(server, "www.shop.test") == []
    assert ssh_json(server, "domains", "shop")["domains"] == []


def test_sharing_events_and_listings(server, shop):
    bob = server.add_key("bob")
    assert ok(server.ssh("sharing:add", "shop", "bob")).strip() == "Sharing shop with bob... done"
    assert ssh_json(server, "sharing", "shop") == {"owner": "admin", "shared_with": ["bob"],
                                                   "deploy_keys": []}
    assert [a["name"] for a in ssh_json(server, "apps", key=bob)] == ["shop"]
    # bob reaches one app: the app may be left out
    assert ok(server.ssh("config:get", "GREETING", key=bob)) == "hi\n"
    ok(server.ssh("sharing:remove", "shop", "bob"))
    assert ssh_json(server, "apps", key=bob) == []
    events = ssh_json(server, "events", "shop")
    actions = [e["action"] for e in events]
    for action in ("sharing:remove", "sharing:add", "domains:add", "rollback", "ps:stop",
                   "ps:restart", "ps:scale", "config", "deploy"):
        assert action in actions
    assert all(e["app"] == "shop" for e in events)
    assert "sharing:add" in ok(server.ssh("events"))
    info = ssh_json(server, "apps:info", "shop")
    assert info["owner"] == "admin" and info["hosts"] == ["shop.paas.localhost"]


def test_errors(server, shop):
    unknown = server.ssh("frobnicate")
    assert unknown.returncode == 1
    assert unknown.stderr == " !     unknown command 'frobnicate', see 'help'\n"
    newline = server.ssh("config:set", "shop", shlex.quote("A=x\ny"))
    assert newline.returncode == 1 and "NUL or newline" in newline.stderr
    bad_name = server.ssh("apps:create", "Bad_Name")
    assert bad_name.returncode == 1 and "invalid app name 'Bad_Name'" in bad_name.stderr
    which = server.ssh("ps")
    assert which.returncode == 1 and "which app?" in which.stderr
    assert "config:set [APP] KEY=VALUE" in ok(server.ssh("help", "config:set"))
    assert "ps:scale" in ok(server.ssh("help"))


def test_a_bad_line_gets_one_generated_line(server, shop):
    """Issue 13: the error of a bad line is generated from the command's declaration: one
    line naming what is wrong, with the usage; nothing is changed."""
    cases = {
        ("config:get", "shop", "A", "B"): "unexpected argument 'B' (usage: config:get [APP]"
                                          " KEY [--encoded])",
        ("config:get", "shop"): "missing KEY (usage: config:get [APP] KEY [--encoded])",
        ("ps", "shop", "--bogus"): "unknown option '--bogus' (usage: ps [APP] [--json])",
        ("releases", "shop", "-n"): "-n needs a value (usage: releases [APP] [-n N] [--json])",
        ("git:set", "shop", "deploy-brunch", "x"): "expected deploy-branch, got"
                                                   " 'deploy-brunch' (usage: git:set",
        ("run", "shop"): "give the command after --: COMMAND [ARGS...] (usage: run [APP]",
    }
    before = ok(server.ssh("events", "shop", "--json"))
    for argv, message in cases.items():
        result = server.ssh(*argv)
        assert result.returncode == 1 and result.stdout == "", (argv, result)
        assert result.stderr.startswith(f" !     {message}"), (argv, result.stderr)
        assert result.stderr.count("\n") == 1, result.stderr
    assert ok(server.ssh("events", "shop", "--json")) == before
    assert ok(server.ssh("help", "buildpacks:set")).startswith(
        "Usage: buildpacks:set [APP] [NAME] [--unset]\n")


def test_local_cli_matches_ssh(server, shop):
    local = server.gitpaas("config", "shop", "--json")
    assert local.returncode == 0, local.stderr
    assert local.stdout == ok(server.ssh("config", "shop", "--json"))
    out = server.gitpaas("config:set", "shop", f"LOCAL={TRICKY}")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith("Setting LOCAL and restarting shop... done, v")
    assert ok(server.ssh("config:get", "shop", "LOCAL")) == TRICKY + "\n"
    assert server.gitpaas("nope").stderr == " !     unknown command 'nope', see 'help'\n"


def test_paas_client(server, shop, tmp_path):
    checkout = make_repo(tmp_path / "checkout", {"README": "x\n"})
    git(checkout, "remote", "add", "paas", server.url("shop"))
    git(checkout, "remote", "add", "other", f"ssh://git@127.0.0.1:{server.ssh_port}/blog.git")
    ssh = [c for c in server.ssh_command() if c not in {"-p", str(server.ssh_port)}]
    env = {**os.environ, "PAAS_SSH": shlex.join(ssh)}

    def paas(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(VENV_BIN / "paas"), *args], cwd=checkout, env=env,
                              capture_output=True, text=True, timeout=300)

    assert ok(paas("config:get", "LOCAL")) == TRICKY + "\n"
    out = ok(paas("config:set", f"SPACED={TRICKY}", "--no-restart"))
    assert "Setting SPACED on shop... done" in out
    assert ok(paas("config:get", "SPACED")) == TRICKY + "\n"
    assert ok(paas("--remote", "other", "domains", "--json")) == \
        ok(server.ssh("domains", "blog", "--json"))
    assert ok(paas("apps")) == ok(server.ssh("apps"))
    failed = paas("config:get", "NOPE")
    assert failed.returncode == 1 and failed.stderr == " !     shop has no config var NOPE\n"
    env["PAAS_SSH"] = ""
    nowhere = subprocess.run([str(VENV_BIN / "paas"), "ps"], cwd=tmp_path, env=env,
                             capture_output=True, text=True)
    assert nowhere.returncode == 1 and "no git remote named 'paas'" in nowhere.stderr


def test_destroy(server, shop, docker_client):
    refused = server.ssh("apps:destroy", "shop")
    assert refused.returncode == 1 and "--confirm shop" in refused.stderr
    out = ok(server.ssh("apps:destroy", "shop", "--confirm", "shop"))
    assert "Destroying shop... done" in out
    assert containers(docker_client, server, running=False) == []
    assert frontend(server, "shop.paas.localhost") == []
    assert not (server.data_dir / "logs" / "shop.log").exists()
    gone = server.ssh("ps", "shop")
    assert gone.returncode == 1
    assert gone.stderr == " !     no app named 'shop', or you may not use it\n"
    ok(server.ssh("apps:destroy", "blog", "--confirm", "blog"))
