"""``help`` and docs/commands.md describe the same commands."""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace

from gitpaas.commands import load_all
from gitpaas.commands.registry import COMMANDS, Context, run_command
from gitpaas.settings import load
from gitpaas.store import Key

DOCS = Path(__file__).resolve().parents[2] / "docs" / "commands.md"
# help prints the ssh command from the settings: a platform with settings only.
PLATFORM = SimpleNamespace(settings=load({"ssh_listen": "0.0.0.0:2022"}, environ={}))


def run(argv, admin=True):
    out, err = io.StringIO(), io.StringIO()
    ctx = Context(PLATFORM, Key("k", "", "", admin, 0.0), io.BytesIO(), out.write, err.write)
    return run_command(ctx, argv), out.getvalue(), err.getvalue()


def test_every_command_is_documented_with_its_usage_and_summary():
    load_all()
    docs = DOCS.read_text()
    for cmd in COMMANDS.values():
        assert f"### `{cmd.usage}`\n{cmd.summary}\n" in docs, cmd.name
    documented = {line[5:-1].split()[0] for line in docs.splitlines()
                  if line.startswith("### `")}
    assert documented == set(COMMANDS)
    for code in ("| 0 |", "| 1 |", "| 2 |", "| 3 |"):
        assert code in docs


def test_help_lists_usages_and_hides_admin_commands():
    code, out, _ = run(["help"])
    assert code == 0 and all(cmd.usage in out for cmd in COMMANDS.values())
    assert "(over ssh: ssh -p 2022 git@paas.localhost COMMAND [ARGS])" in out
    code, out, _ = run(["help"], admin=False)
    assert "keys:remove" in out and "config:set" in out  # owners manage deploy keys
    assert "\n  keys " not in out  # listing every key stays admin-only


def test_help_of_a_deploy_key_lists_only_what_it_may_run():
    import io

    from gitpaas.commands.registry import Context, run_command
    from gitpaas.store import Key

    out = io.StringIO()
    ctx = Context(PLATFORM, Key("ci", "", "", False, 0.0, deploy_app="shop"), io.BytesIO(),
                  out.write, out.write)
    assert run_command(ctx, ["help"]) == 0
    listed = {line.split()[0] for line in out.getvalue().splitlines()[2:] if line.strip()}
    assert listed == {"help", "logs", "releases", "version"}


def test_unknown_command_and_bad_characters():
    assert run(["nope"])[0] == 1
    assert run(["nope"])[2] == " !     unknown command 'nope', see 'help'\n"
    code, _, err = run(["config:set", "A=b\nc"])
    assert code == 1 and "NUL or newline" in err
