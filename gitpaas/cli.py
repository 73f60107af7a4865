"""The ``gitpaas`` command: ``serve``, ``router``, ``images:build`` and, as the local admin,
every registered command (``gitpaas keys:add NAME FILE``, ``gitpaas apps`` ...)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator

from . import settings as settings_mod
from .commands.registry import EXIT_USER, Context, run_command
from .errors import GitPaasError
from .store import Key

LOCAL_ADMIN = Key(name="local", fingerprint="", public_key="", is_admin=True, created_at=0.0)
SERVER_COMMANDS = {"serve", "router", "images:build"}


def local_pty_size() -> tuple[int, int] | None:
    """(columns, rows) of the local terminal when stdin and stdout are one, else None."""
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        return None
    size = os.get_terminal_size(sys.stdout.fileno())
    return size.columns, size.lines


def wants_tty(argv: list[str]) -> bool:
    """Whether the local command runs interactively on a pty (``enter``, ``run --tty``)."""
    options = argv[:argv.index("--")] if "--" in argv else argv
    return bool(options) and (options[0] == "enter" or (
        options[0] == "run" and ("--tty" in options or "-t" in options)))


@contextlib.contextmanager
def raw_terminal(enabled: bool) -> Iterator[None]:
    """The local terminal in raw mode while an interactive command runs, then restored."""
    if not enabled:
        yield
        return
    import termios
    import tty

    saved = termios.tcgetattr(0)
    try:
        tty.setraw(0)
        yield
    finally:
        termios.tcsetattr(0, termios.TCSADRAIN, saved)


def common_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--config", help="YAML settings file")
    parser.add_argument("--data-dir", help="data directory (GITPAAS_DATA_DIR)")
    return parser


def load_settings(opts: argparse.Namespace, **extra: object) -> settings_mod.Settings:
    overrides = {"data_dir": opts.data_dir, **extra}
    return settings_mod.load(overrides, config_file=opts.config)


def configure_logging(level: str = "INFO") -> None:
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("paramiko").setLevel(logging.WARNING)


def serve(argv: list[str]) -> int:
    """Run the SSH server and the router until SIGTERM or SIGINT."""
    parser = common_parser("gitpaas serve")
    parser.add_argument("--ssh-listen")
    parser.add_argument("--http-listen")
    parser.add_argument("--no-router", action="store_true", help="run only the SSH server")
    parser.add_argument("--log-level", default="INFO")
    opts = parser.parse_args(argv)
    configure_logging(opts.log_level)
    settings = load_settings(opts, ssh_listen=opts.ssh_listen, http_listen=opts.http_listen)
    from .platform import Platform
    from .ssh.server import SSHServer

    platform = Platform(settings)
    platform.store  # noqa: B018 - open and migrate the store before accepting connections
    from .reconcile import start_in_thread as start_reconciler

    # Before accepting connections: interrupted deploys marked failed, Docker and Redis
    # brought back to the recorded state; then a pass every reconcile_interval seconds.
    _, stop_reconciler = start_reconciler(platform, settings.reconcile_interval)
    from .cron import start_in_thread as start_cron

    stop_cron = start_cron(platform, settings.cron_interval)
    from .drains import start_in_thread as start_drains

    stop_drains = start_drains(platform)
    host, port = settings.listen("ssh")
    ssh = SSHServer(platform, host, port)
    router = None
    if not opts.no_router:
        from . import router as router_mod

        router = router_mod.start_in_thread(settings)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    threading.Thread(target=ssh.serve_forever, daemon=True, name="ssh-accept").start()
    logging.getLogger("gitpaas").info(
        "gitpaas serving ssh on %s:%d%s", host, ssh.port,
        f", http on port {router.port}" if router else "")
    logging.getLogger("gitpaas").info("ssh host keys: %s", ", ".join(
        f"{key.get_name()} {key.fingerprint}" for key in ssh.host_keys))
    print(f"gitpaas: ssh port {ssh.port}" + (f", http port {router.port}" if router else ""),
          flush=True)
    stop.wait()
    stop_reconciler.set()
    stop_cron.set()
    stop_drains.set()
    ssh.stop()
    if router is not None:
        router.stop()
    return 0


def router_main(argv: list[str]) -> int:
    """Run the router alone (several routers may share one Redis)."""
    parser = common_parser("gitpaas router")
    parser.add_argument("--http-listen")
    parser.add_argument("--workers", type=int, help="worker processes (router_workers)")
    parser.add_argument("--log-level", default="INFO")
    opts = parser.parse_args(argv)
    configure_logging(opts.log_level)
    from . import router as router_mod

    settings = load_settings(opts, http_listen=opts.http_listen, router_workers=opts.workers)
    router_mod.run(settings, workers=settings.router_workers)
    return 0


def images_build(argv: list[str]) -> int:
    from . import images

    return images.main(argv)


def _write_out(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _write_err(text: str) -> None:
    sys.stderr.write(text)
    sys.stderr.flush()


def _write_out_bytes(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.flush()


def _write_err_bytes(data: bytes) -> None:
    sys.stderr.buffer.write(data)
    sys.stderr.flush()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SERVER_COMMANDS:
        handler = {"serve": serve, "router": router_main, "images:build": images_build}
        try:
            return handler[argv[0]](argv[1:])
        except GitPaasError as exc:
            print(f" !     {exc.message}", file=sys.stderr)
            return exc.exit_code
    # Local admin commands: global options first, then COMMAND [ARGS].
    parser = common_parser("gitpaas")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    opts = parser.parse_args(argv)
    configure_logging("WARNING")
    try:
        settings = load_settings(opts)
    except GitPaasError as exc:
        print(f" !     {exc.message}", file=sys.stderr)
        return EXIT_USER
    from .platform import Platform

    platform = Platform(settings)
    ctx = Context(platform, LOCAL_ADMIN, sys.stdin.buffer,
                  _write_out, _write_err, is_local=True, recv=lambda n: os.read(0, n),
                  write_out_bytes=_write_out_bytes, write_err_bytes=_write_err_bytes,
                  pty_size=local_pty_size())
    with raw_terminal(ctx.pty_size is not None and wants_tty(opts.command)):
        code = run_command(ctx, opts.command)
    if "deployer" in platform.__dict__:  # a release was rolled out: retire the old one
        platform.deployer.wait_retired()
    return code


if __name__ == "__main__":
    sys.exit(main())
