"""The ``gitpaas`` command: ``serve``, ``router``, ``edge:stop``, ``images:build`` and, as the
local admin, every registered command (``gitpaas keys:add NAME FILE``, ``gitpaas apps`` ...)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from . import settings as settings_mod
from .commands.registry import EXIT_USER, Context, run_command
from .errors import GitPaasError
from .store import Key

if TYPE_CHECKING:
    from .registry import RegistryProcess

LOCAL_ADMIN = Key(name="local", fingerprint="", public_key="", is_admin=True, created_at=0.0)
SERVER_COMMANDS = {"serve", "router", "edge:stop", "images:build", "migrate"}


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


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_BACKUPS = 5


def configure_logging(level: str = "INFO", log_file: str = "", max_bytes: int = 0) -> None:
    """Log to stderr (the journal under systemd), or to ``log_file`` rotated at
    ``max_bytes`` with the router's access lines in ``access.log`` next to it."""
    from logging.handlers import RotatingFileHandler

    handlers: list[logging.Handler] | None = None
    if log_file:
        path = Path(log_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        handlers = [RotatingFileHandler(path, maxBytes=max_bytes, backupCount=LOG_BACKUPS)]
        access = RotatingFileHandler(path.with_name("access.log"), maxBytes=max_bytes,
                                     backupCount=LOG_BACKUPS)
        access.setFormatter(logging.Formatter(LOG_FORMAT))
        access_log = logging.getLogger("gitpaas.router.access")
        access_log.addHandler(access)
        access_log.propagate = False
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO),
                        format=LOG_FORMAT, handlers=handlers, force=bool(handlers))
    logging.getLogger("paramiko").setLevel(logging.WARNING)


def start_edge(settings: settings_mod.Settings) -> threading.Event:
    """Start (or adopt) the edge's nginx and supervise it; set the event to stop
    supervising. nginx itself keeps running: ``gitpaas edge:stop`` stops it."""
    from .edge import Edge, EdgeConfig

    return Edge(EdgeConfig.from_settings(settings)).start_supervised()


def start_cert_sync(settings: settings_mod.Settings) -> threading.Event | None:
    """``gitpaas router``: keep the edge's certificate files in line with the copies in
    Redis (``edge.certsync``). None on ``serve``'s own data dir, whose files are the
    source of those copies (a second writer of the same files would only race)."""
    from .edge.certsync import CertSync, is_serve_data_dir, open_redis_warning

    if warning := open_redis_warning(settings.redis_url):
        logging.getLogger("gitpaas").warning(warning)
    if is_serve_data_dir(settings.data_dir):
        logging.getLogger("gitpaas").info(
            "certificate sync off: %s is gitpaas serve's data dir (its certificates are"
            " the source)", settings.data_dir)
        return None
    return CertSync(settings.redis_url, settings.routes_prefix,
                    settings.data_dir / "edge").start_in_thread()


def start_registry(settings: settings_mod.Settings) -> RegistryProcess:
    """``runtime: swarm``: start and supervise the image registry the nodes pull from,
    trusted by this host's engine (see ``registry``)."""
    from .registry import RegistryFiles, RegistryProcess

    files = RegistryFiles(settings)
    process = RegistryProcess(files)
    process.start()
    files.trust_on_host()
    process.supervise()
    return process


def wait_for_signal(stop: threading.Event) -> None:
    """Wait for ``stop`` (set by the SIGTERM/SIGINT handler), waking every second: the
    kernel may deliver the signal to another thread (one of the SSH connections'), and then
    only a main thread that runs again calls Python's handler; a main thread blocked in an
    endless wait never would (seen once: ``gitpaas serve`` ignored SIGTERM after a flood)."""
    while not stop.wait(1.0):
        pass


def serve(argv: list[str]) -> int:
    """Run the SSH server and supervise the edge (nginx) until SIGTERM or SIGINT."""
    parser = common_parser("gitpaas serve")
    parser.add_argument("--ssh-listen")
    parser.add_argument("--http-listen")
    parser.add_argument("--no-router", action="store_true",
                        help="run only the SSH server (no edge)")
    parser.add_argument("--log-level", default="INFO")
    opts = parser.parse_args(argv)
    settings = load_settings(opts, ssh_listen=opts.ssh_listen, http_listen=opts.http_listen)
    configure_logging(opts.log_level, settings.log_file, settings.log_max_bytes)
    from .backups.restore import serve_lock

    # Held while serving: backups:restore refuses to run under a live server.
    # A restarted serve waits (a minute at most) for the previous one to let go.
    with serve_lock(settings, f"gitpaas serve (pid {os.getpid()})", 60.0):
        return _serve(settings, opts)


def _serve(settings: settings_mod.Settings, opts: argparse.Namespace) -> int:
    from . import doctor
    from .backups import schedule
    from .platform import Platform
    from .ssh.server import SSHServer

    platform = Platform(settings)
    platform.store  # noqa: B018 - open and migrate the store before accepting connections
    registry = start_registry(settings) if settings.runtime == "swarm" else None
    # The edge first: an nginx still running from before is adopted and keeps serving.
    stop_edge = None if opts.no_router else start_edge(settings)
    http_port = None if opts.no_router else settings.listen("http")[1]
    from .git.maintenance import start_in_thread as start_maintenance
    from .reconcile import start_in_thread as start_reconciler

    # Before accepting connections: interrupted deploys marked failed, Docker and Redis
    # brought back to the recorded state; then a pass every reconcile_interval seconds.
    _, stop_reconciler = start_reconciler(platform, settings.reconcile_interval)
    # Partial packs of receives a previous process did not finish go before any push;
    # then repos are repacked every repo_gc_interval seconds.
    stop_maintenance = start_maintenance(platform.repo_maintainer(), settings.repo_gc_interval)
    from .cron import start_in_thread as start_cron

    stop_cron = start_cron(platform, settings.cron_interval)
    from .drains import start_in_thread as start_drains

    stop_drains = start_drains(platform)
    from .edge.certs import start_in_thread as start_certs
    from .edge.certsync import open_redis_warning

    # Certificates: a pass now and every few minutes, and at once after a deploy; each
    # is copied to Redis too, for edges on other hosts (edge.certsync).
    if warning := open_redis_warning(settings.redis_url):
        logging.getLogger("gitpaas").warning(warning)
    _, stop_certs = start_certs(platform)
    host, port = settings.listen("ssh")
    ssh = SSHServer(platform, host, port)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    threading.Thread(target=ssh.serve_forever, daemon=True, name="ssh-accept").start()
    logging.getLogger("gitpaas").info(
        "gitpaas serving ssh on %s:%d%s", host, ssh.port,
        f", http on port {http_port} (nginx)" if http_port else "")
    logging.getLogger("gitpaas").info("ssh host keys: %s", ", ".join(
        f"{key.get_name()} {key.fingerprint}" for key in ssh.host_keys))
    print(f"gitpaas: ssh port {ssh.port}" + (f", http port {http_port}" if http_port else ""),
          flush=True)
    stop_backups = schedule.start_in_thread(platform)
    # Spare app networks made ahead: a new app claims one (issue 17, scale).
    networks = getattr(platform.runtime.sandbox, "networks", None)
    stop_spares = networks.start_filling() if networks is not None else None
    stop_doctor = threading.Event()
    if settings.doctor_interval > 0:
        threading.Thread(target=doctor.Watcher(platform).loop, daemon=True, name="doctor",
                         args=(stop_doctor, settings.doctor_interval)).start()
    wait_for_signal(stop)
    stop_doctor.set()
    stop_backups.set()
    if networks is not None:
        networks.stop_filling(stop_spares)
    stop_reconciler.set()
    stop_maintenance.set()
    stop_cron.set()
    stop_drains.set()
    stop_certs.set()
    ssh.stop()
    if registry is not None:
        registry.stop()
    if stop_edge is not None:
        stop_edge.set()  # nginx keeps serving until the next serve adopts it
    return 0


def router_main(argv: list[str]) -> int:
    """Start (or adopt) and supervise the edge alone, on an extra host sharing the Redis."""
    parser = common_parser("gitpaas router")
    parser.add_argument("--http-listen")
    parser.add_argument("--workers", type=int, help="nginx worker processes (router_workers)")
    parser.add_argument("--log-level", default="INFO")
    opts = parser.parse_args(argv)
    configure_logging(opts.log_level)
    settings = load_settings(opts, http_listen=opts.http_listen, router_workers=opts.workers)
    stop, again = threading.Event(), threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    def hangup(*_: object) -> None:
        again.set()
        stop.set()

    signal.signal(signal.SIGHUP, hangup)
    # rerun() blocks SIGHUP across exec: one sent while this process started waited
    # (pending) for the handler and runs it now; a fresh process gets it unblocked too.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})
    stop_edge = start_edge(settings)
    # The certificates serve issued or was given, from Redis (docs/router.md).
    stop_sync = start_cert_sync(settings)
    print(f"gitpaas: edge http port {settings.listen('http')[1]}", flush=True)
    wait_for_signal(stop)
    if stop_sync is not None:
        stop_sync.set()
    stop_edge.set()
    if again.is_set():
        rerun(["router", *argv])
    return 0


def rerun(argv: list[str]) -> None:
    """Replace this process (same pid: systemd's main process stays) by the gitpaas now
    installed, with the same settings sources: ``gitpaas router`` on SIGHUP
    (``systemctl reload gitpaas-router``, which scripts/upgrade runs), so that the new
    code adopts nginx and reloads it if its config or Lua changed, without a restart."""
    logging.getLogger("gitpaas").info("SIGHUP: running the installed gitpaas again")
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    code = "import sys; from gitpaas.cli import main; sys.exit(main())"
    # Until the new process installs its handler SIGHUP's action is the default one (the
    # process ends: a clean exit to systemd, which restarts nothing; nginx in the unit's
    # cgroup dies with it). Blocked, a SIGHUP sent meanwhile stays pending across exec
    # (the mask survives it) until router_main unblocks it: another run follows.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
    os.execv(sys.executable, [sys.executable, "-c", code, *argv])  # noqa: S606 - no shell


def edge_stop(argv: list[str]) -> int:
    """Stop the edge's nginx of this data dir (requests under way finish first)."""
    parser = common_parser("gitpaas edge:stop")
    parser.add_argument("--fast", action="store_true", help="do not wait for requests")
    opts = parser.parse_args(argv)
    from .edge import Edge, EdgeConfig

    edge = Edge(EdgeConfig.from_settings(load_settings(opts)))
    if edge.stop(graceful=not opts.fast):
        print("-----> edge stopped")
    else:
        print("-----> edge was not running")
    return 0


def migrate(argv: list[str]) -> int:
    """Bring the state store's schema to this version's (``scripts/upgrade`` runs it)."""
    parser = common_parser("gitpaas migrate")
    opts = parser.parse_args(argv)
    configure_logging("WARNING")
    from .store import open_store

    settings = load_settings(opts)
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    store = open_store(settings.database, settings.secret_key_path)
    print(f"gitpaas: the state store is at schema version {store.schema_version()}")
    store.close()
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
        handler = {"serve": serve, "router": router_main, "edge:stop": edge_stop,
                   "images:build": images_build, "migrate": migrate}
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
