"""``paas``: run gitpaas commands for the app of the current checkout.

It reads the git remote named ``paas`` (or ``--remote NAME``), takes host, port and app
from its URL and runs ``ssh -p PORT git@HOST COMMAND --app APP ARGS``. The remote command
is one string of shell-quoted arguments (the server splits it with ``shlex``); nothing
runs in a local shell. The ssh program and its options come from ``PAAS_SSH``, else
``GIT_SSH_COMMAND``, else plain ``ssh`` (for example
``PAAS_SSH="ssh -i ~/.ssh/id_paas -o IdentitiesOnly=yes"``).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_REMOTE = "paas"
# Commands that take no app: ``paas`` does not add ``--app`` to them.
NO_APP = frozenset({"help", "version", "apps", "apps:create", "keys", "keys:add",
                    "keys:remove"})
SSH_URL_RE = re.compile(r"ssh://(?:(?P<user>[^@/]+)@)?(?P<host>\[[^\]]+\]|[^:/]+)"
                        r"(?::(?P<port>[0-9]{1,5}))?/(?P<path>.+)")
SCP_URL_RE = re.compile(r"(?:(?P<user>[^@/:]+)@)?(?P<host>\[[^\]]+\]|[^:/]+):(?P<path>[^/].*)")
USAGE = """usage: paas [--remote NAME] [--app APP] COMMAND [ARGS...]

Runs a gitpaas command over ssh for the app of the git remote 'paas' in this checkout.
Environment: PAAS_SSH (else GIT_SSH_COMMAND) is the ssh command to use."""


class ClientError(Exception):
    """A problem found before anything was sent to the server."""


@dataclass(frozen=True)
class Remote:
    """Where a gitpaas app lives, from its git URL."""

    user: str
    host: str
    port: int
    app: str


def parse_remote_url(url: str) -> Remote:
    """``ssh://git@HOST:PORT/APP.git`` or ``git@HOST:APP.git`` -> ``Remote``."""
    match = SSH_URL_RE.fullmatch(url) if url.startswith("ssh://") else SCP_URL_RE.fullmatch(url)
    if not match:
        raise ClientError(f"not an ssh git URL: {url!r}")
    path = match.group("path").strip("/")
    app = path[:-4] if path.endswith(".git") else path
    if not app or "/" in app:
        raise ClientError(f"cannot find the app in {url!r} (expected .../APP.git)")
    port = int(match.groupdict().get("port") or 22)
    return Remote(match.group("user") or "git", match.group("host").strip("[]"), port, app)


def remote_url(name: str) -> str:
    """The URL of git remote ``name`` in the current checkout."""
    try:
        result = subprocess.run(["git", "remote", "get-url", name], capture_output=True,
                                text=True, check=False)
    except FileNotFoundError as exc:
        raise ClientError("git is not installed") from exc
    if result.returncode != 0:
        raise ClientError(f"no git remote named {name!r} here"
                          f" (git remote add {name} GIT_URL; the server's apps:info APP"
                          " shows the app's git_url)")
    return result.stdout.strip()


def split_options(argv: list[str]) -> tuple[str, str | None, list[str]]:
    """Take ``--remote NAME`` and ``--app APP`` given before the command."""
    remote, app = DEFAULT_REMOTE, None
    args = list(argv)
    while args and args[0] in {"--remote", "-r", "--app", "-a"}:
        if len(args) < 2:
            raise ClientError(f"{args[0]} needs a value")
        if args[0] in {"--remote", "-r"}:
            remote = args[1]
        else:
            app = args[1]
        del args[:2]
    return remote, app, args


def options_of(args: list[str]) -> list[str]:
    """The arguments before ``--`` (after it comes a command for the container)."""
    return args[:args.index("--")] if "--" in args else args


def has_app_option(args: list[str]) -> bool:
    return any(a in {"--app", "-a"} or a.startswith("--app=") for a in options_of(args))


def wants_tty(command: str, args: list[str]) -> bool:
    """``enter`` and ``run --tty`` need ssh to allocate a pty (``ssh -t``)."""
    return command == "enter" or (command == "run" and bool(
        {"--tty", "-t"} & set(options_of(args))))


def remote_command(command: str, app: str | None, args: list[str]) -> str:
    """The command string for the server: each argument shell-quoted."""
    words = [command, *args]
    if app and command not in NO_APP and not has_app_option(args):
        words = [command, "--app", app, *args]
    return " ".join(shlex.quote(w) for w in words)


def ssh_program(environ: dict[str, str]) -> list[str]:
    """The ssh command as an argument list (from PAAS_SSH or GIT_SSH_COMMAND)."""
    value = environ.get("PAAS_SSH") or environ.get("GIT_SSH_COMMAND") or "ssh"
    return shlex.split(value)


def build_argv(argv: list[str], environ: dict[str, str],
               url_for: Callable[[str], str] = remote_url) -> list[str]:
    """The full ssh argument list for ``paas ARGV``."""
    remote_name, app, args = split_options(argv)
    if not args:
        args = ["help"]
    remote = parse_remote_url(url_for(remote_name))
    command = remote_command(args[0], app or remote.app, args[1:])
    tty = ["-t"] if wants_tty(args[0], args[1:]) else []
    return [*ssh_program(environ), *tty, "-p", str(remote.port),
            f"{remote.user}@{remote.host}", command]


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``paas`` console script; returns ssh's exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["-h"], ["--help"]):
        print(USAGE)
        return 0
    try:
        ssh_argv = build_argv(argv, dict(os.environ))
    except ClientError as exc:
        print(f" !     {exc}", file=sys.stderr)
        return 1
    try:
        return subprocess.run(ssh_argv, check=False).returncode
    except FileNotFoundError:
        print(f" !     cannot run {ssh_argv[0]!r}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
