"""SSH: authenticate registered public keys, then run one exec request per connection.

Allowed: ``git-receive-pack '<app>.git'``, ``git-upload-pack '<app>.git'`` and the
registered commands. Refused: passwords, keyboard-interactive, shell, subsystems, env, X11
and every kind of forwarding. A pty request is granted but only recorded: no process on
the host gets a terminal; ``run --tty`` and ``enter`` pass its size to the container's
pty, other commands only get "\r\n" line ends for the client's raw terminal.

Before any of that: the connection caps and the per-source throttle (``limits.py``), the
algorithm allow-list (``crypto.py``) and a pre-auth deadline; accept errors are retried.
"""

from __future__ import annotations

import logging
import secrets
import shlex
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import paramiko
from paramiko.common import (
    AUTH_FAILED,
    AUTH_SUCCESSFUL,
    OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED,
    OPEN_SUCCEEDED,
)

from .. import sshkeys
from ..commands.registry import EXIT_INTERNAL, EXIT_USER, Context, check_argv, run_command
from ..errors import GitPaasError, UserError
from ..git import repos
from ..git.receive import Progress, serve_receive_pack, serve_upload_pack
from ..store import Key
from . import idlegroup, limits, priority
from .crypto import HardenedTransport
from .hostkey import load_host_keys
from .idlegroup import IdleGroup
from .limits import Limiter

if TYPE_CHECKING:
    from ..platform import Platform

log = logging.getLogger(__name__)
ACCEPT_BACKOFF_MIN = 0.01
ACCEPT_BACKOFF_MAX = 1.0
REFUSAL_LOG_SECONDS = 10.0
ACCEPT_ERROR_LOG_SECONDS = 30.0
EXEC_TIMEOUT = 30
CLOSE_GRACE = 5
KEEPALIVE = 30
GIT_COMMANDS = {"git-receive-pack", "git-upload-pack"}


class PreauthTransport(HardenedTransport):
    """The allow-listed transport. Its thread inherits the pre-auth priority of the
    connection's thread that starts it (``priority.py``) and gets ``restore_to`` back
    when the client has authenticated, i.e. proved it holds a registered key
    (``check_auth_publickey`` alone is no proof: paramiko asks it before it checks the
    signature, and for a client that only asks whether a key would do)."""

    restore_to: priority.Priority | None = None  # None: the thread was not lowered
    idle_group: IdleGroup | None = None  # born in it (idlegroup.py)
    leave_to: Path | None = None  # the tasks file of the group to go back to
    on_authenticated: Callable[[], None] | None = None

    def _auth_trigger(self) -> None:
        # paramiko calls this in the transport thread once it sent USERAUTH_SUCCESS
        super()._auth_trigger()  # type: ignore[misc]
        if self.idle_group is not None:
            self.idle_group.leave(self.leave_to)
        if self.restore_to is not None:
            priority.restore(self.restore_to)
        if self.on_authenticated is not None:
            self.on_authenticated()


class Policy(paramiko.ServerInterface):
    """paramiko's callbacks: decide quickly, never block the transport thread."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.key: Key | None = None
        self.command: bytes | None = None
        self.exec_ready = threading.Event()
        self.pty_size: tuple[int, int] | None = None  # (columns, rows)
        # set by the session: called with (columns, rows)
        self.on_resize: Callable[[int, int], None] | None = None

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_password(self, username: str, password: str) -> int:
        return AUTH_FAILED

    def check_auth_interactive(self, username: str, submethods: str) -> int:
        return AUTH_FAILED

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        try:
            found = self.platform.store.key_by_fingerprint(sshkeys.fingerprint(key.asbytes()))
        except GitPaasError:
            log.exception("cannot look up a key")
            return AUTH_FAILED
        if found is None:
            return AUTH_FAILED
        self.key = found
        return AUTH_SUCCESSFUL

    def check_channel_request(self, kind: str, chanid: int) -> int:
        if kind == "session" and self.key is not None:
            return OPEN_SUCCEEDED
        return OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        if self.key is None or self.command is not None:
            return False
        self.command = bytes(command)
        self.exec_ready.set()
        return True

    def check_channel_pty_request(self, channel: paramiko.Channel, term: bytes, width: int,
                                  height: int, pixelwidth: int, pixelheight: int,
                                  modes: bytes) -> bool:
        if self.key is None or self.command is not None:
            return False
        self.pty_size = (max(1, min(int(width), 1000)), max(1, min(int(height), 1000)))
        return True

    def check_channel_window_change_request(self, channel: paramiko.Channel, width: int,
                                            height: int, pixelwidth: int,
                                            pixelheight: int) -> bool:
        if self.pty_size is None:
            return False
        self.pty_size = (max(1, min(int(width), 1000)), max(1, min(int(height), 1000)))
        if self.on_resize is not None:
            self.on_resize(*self.pty_size)
        return True

    def check_channel_shell_request(self, channel: paramiko.Channel) -> bool:
        return False

    def check_channel_subsystem_request(self, channel: paramiko.Channel, name: str) -> bool:
        return False

    def check_channel_env_request(self, channel: paramiko.Channel, name: bytes,
                                  value: bytes) -> bool:
        return False

    def check_channel_x11_request(self, *args: Any) -> bool:
        return False

    def check_channel_forward_agent_request(self, channel: paramiko.Channel) -> bool:
        return False

    def check_port_forward_request(self, address: str, port: int) -> int | bool:
        return False

    def check_channel_direct_tcpip_request(self, chanid: int, origin: Any,
                                           destination: Any) -> int:
        return OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_global_request(self, kind: str, msg: Any) -> bool:
        return False


class Session:
    """Runs the one exec request of an authenticated connection on its channel."""

    def __init__(self, platform: Platform, key: Key, channel: paramiko.Channel,
                 pty_size: tuple[int, int] | None = None) -> None:
        self.platform = platform
        self.key = key
        self.channel = channel
        self.pty_size = pty_size
        self.ctx: Context | None = None

    def resized(self, columns: int, rows: int) -> None:
        """The client's window changed: tell the interactive command, if one runs."""
        term = self.ctx.active_terminal if self.ctx is not None else None
        if term is not None:
            term.resized(columns, rows)

    def _text_writer(self, send: Callable[[bytes], None]) -> Callable[[str], None]:
        # A client with a pty put its terminal in raw mode: line ends need "\r\n".
        if self.pty_size is None:
            return lambda s: send(s.encode("utf-8", "replace"))
        return lambda s: send(s.replace("\n", "\r\n").encode("utf-8", "replace"))

    def err(self, text: str) -> None:
        """One line on the client's stderr (nothing if the client is gone)."""
        try:
            self.channel.sendall_stderr((text + "\n").encode("utf-8", "replace"))
        except OSError as exc:
            log.info("cannot tell the client %r: %s", text[:80], exc)

    def run(self, raw: bytes) -> int:
        try:
            command = raw.decode("utf-8")
        except UnicodeDecodeError:
            self.err(" !     the command is not valid UTF-8")
            return EXIT_USER
        try:
            check_argv([command])
            argv = shlex.split(command)
        except (ValueError, GitPaasError) as exc:
            self.err(f" !     cannot parse the command: {getattr(exc, 'message', exc)}")
            return EXIT_USER
        if argv and argv[0] in GIT_COMMANDS:
            return self.git(argv)
        try:
            return self.command(argv)
        except Exception as exc:  # noqa: BLE001 - never just "Connection closed"
            return self.internal_error(exc, f"command {argv[:1]}")

    def command(self, argv: list[str]) -> int:
        ctx = self.ctx = Context(
            self.platform, self.key, self.channel.makefile("rb"),
            self._text_writer(self.channel.sendall),
            self._text_writer(self.channel.sendall_stderr),
            closed=lambda: self.channel.closed, recv=self.channel.recv,
            write_out_bytes=self.channel.sendall, write_err_bytes=self.channel.sendall_stderr,
            pty_size=self.pty_size)
        return run_command(ctx, argv)

    def git(self, argv: list[str]) -> int:
        """Serve git-receive-pack or git-upload-pack; every error is one line on stderr."""
        try:
            if len(argv) != 2:
                raise UserError(f"usage: {argv[0]} '<app>.git'")
            name = repos.parse_repo_arg(argv[1])
            # A client that goes silent mid-transfer must not hold the app's lock for ever.
            self.channel.settimeout(self.platform.settings.git_idle_timeout)
            if argv[0] == "git-upload-pack":
                self.fetch(name)
            else:
                self.push(name)
            return 0
        except GitPaasError as exc:
            self.err(f" !     {exc.message}")
            return exc.exit_code
        except TimeoutError:
            log.info("git session for %s: the client was idle for %ss", argv[1],
                     self.platform.settings.git_idle_timeout)
            self.err(f" !     no data for {self.platform.settings.git_idle_timeout:.0f}s;"
                     " giving up")
            return EXIT_USER
        except Exception as exc:  # noqa: BLE001 - a broken session must not kill the server
            if type(exc).__name__ == "HangupException":
                return 0
            return self.internal_error(exc, f"git session for {argv[1]}")

    def fetch(self, name: str) -> None:
        platform = self.platform
        repo = platform.repo(platform.app_for(self.key, name))
        try:
            serve_upload_pack(repo, self.channel.recv, self.channel.sendall)
        finally:
            repo.close()

    def push(self, name: str) -> None:
        """Receive a push holding the app's lock from before the refs are advertised until
        they moved: a second push (a first push to a new app too) waits, saying so on
        stderr, which git shows, then sees the first's refs."""
        platform = self.platform
        app = platform.app_for_push(self.key, name)  # None: created below, under the lock
        # Who holds the lock is told only to a key that may use the app.
        notify = self.err if app is not None else None
        with platform.lock(name, f"push by {self.key.name}", notify):
            if app is None:
                app = platform.create_app_for_push(self.key, name)
            repo = platform.repo(app)
            try:
                def on_update(ref: bytes, old: bytes, new: bytes,
                              progress: Progress) -> str | None:
                    return platform.on_push(app.name, repo, self.key, ref, old, new, progress)

                serve_receive_pack(repo, self.channel.recv, self.channel.sendall, on_update,
                                   platform.settings.max_object_bytes)
            finally:
                repo.close()

    def internal_error(self, exc: BaseException, what: str) -> int:
        """One line with an incident id for the client; the traceback for the log."""
        incident = secrets.token_hex(4)
        log.error("incident %s: %s failed", incident, what, exc_info=exc)
        self.err(f" !     internal error (incident {incident}); the server log has the details")
        return EXIT_INTERNAL


def _refuse(sock: socket.socket, reason: str) -> None:
    """Close a connection before any SSH work, with one line a person can read."""
    try:
        sock.send(f"gitpaas: {reason}, try again later\r\n".encode(), socket.MSG_DONTWAIT)
    except OSError:
        pass
    sock.close()


class QuickAckSocket:
    """The accepted socket, acknowledging what it read at once (``TCP_QUICKACK``).

    OpenSSH's client leaves Nagle on for non-interactive sessions (git): it holds a small
    message until the one before it is acknowledged, and Linux delays that ACK up to 40 ms
    when the server has nothing to send yet. Measured: 40-47 ms lost in every connection's
    handshake (NEWKEYS then SERVICE_REQUEST). ``TCP_QUICKACK`` is not sticky, so it is set
    again after each read. Everything else is the socket's."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def recv(self, size: int, *flags: int) -> bytes:
        data = self._sock.recv(size, *flags)
        if QUICKACK is not None:
            try:
                self._sock.setsockopt(socket.IPPROTO_TCP, QUICKACK, 1)
            except OSError:
                pass
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


QUICKACK = getattr(socket, "TCP_QUICKACK", None)  # Linux only


def handle_connection(platform: Platform, host_keys: list[paramiko.PKey], sock: socket.socket,
                      address: str = "", wait: float = 0.0,
                      on_authenticated: Callable[[], None] | None = None,
                      preauth_idle: bool | None = None,
                      idle_group: IdleGroup | None = None) -> None:
    """Serve one TCP connection: handshake, auth, one exec, exit status, close.

    ``wait``: seconds to hold the connection before the banner (its source's turn). From
    its start, a connection has ``ssh_preauth_timeout`` seconds in all to authenticate and
    open its session. ``on_authenticated``: called (in the transport thread) when the
    client has authenticated. ``preauth_idle``: True, this thread and the transport's run
    under ``SCHED_IDLE`` until then; False, niced by ``PREAUTH_NICE``; None, unchanged
    (``priority.py``). ``idle_group``: both threads sit in that cpu cgroup until then
    (``idlegroup.py``).
    """
    settings = platform.settings
    deadline = time.monotonic() + settings.ssh_preauth_timeout
    restore_to = priority.lower(preauth_idle) if preauth_idle is not None else None
    leave_to = idle_group.enter() if idle_group is not None else None
    if wait > 0:
        time.sleep(wait)
    # (paramiko wants a socket: the wrapper is one in all but its class, see __getattr__)
    transport = PreauthTransport(cast(socket.socket, QuickAckSocket(sock)))
    transport.restore_to = restore_to
    if leave_to is not None:
        transport.idle_group, transport.leave_to = idle_group, leave_to
    transport.on_authenticated = on_authenticated
    try:
        for key in host_keys:
            transport.add_server_key(key)
        policy = Policy(platform)
        negotiated = threading.Event()
        transport.start_server(event=negotiated, server=policy)  # inherits this priority
        channel = _accept(transport, negotiated, deadline)
        if channel is None:
            if time.monotonic() >= deadline:
                log.info("ssh connection from %s closed: not authenticated within %ss",
                         address, settings.ssh_preauth_timeout)
            return
        if leave_to is not None and idle_group is not None:  # the session runs here
            idle_group.leave(leave_to)
        if restore_to is not None:
            priority.restore(restore_to)
        transport.set_keepalive(KEEPALIVE)
        if (not policy.exec_ready.wait(EXEC_TIMEOUT) or policy.command is None
                or policy.key is None):
            channel.close()
            return
        session = Session(platform, policy.key, channel, policy.pty_size)
        policy.on_resize = session.resized
        code = session.run(policy.command)
        try:
            channel.send_exit_status(code)
            channel.shutdown_write()
        finally:
            channel.close()
        transport.join(CLOSE_GRACE)  # let the client hang up first: no "connection reset"
    except (paramiko.SSHException, EOFError, OSError) as exc:
        log.info("ssh connection ended: %s", exc)
    except Exception:  # noqa: BLE001
        log.exception("ssh connection failed")
    finally:
        transport.close()


def _accept(transport: paramiko.Transport, negotiated: threading.Event,
            deadline: float) -> paramiko.Channel | None:
    """The session channel of an authenticated client, or None at the pre-auth deadline
    (or as soon as the transport died)."""
    if not negotiated.wait(max(0.0, deadline - time.monotonic())):
        return None
    while transport.is_active():
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        channel = transport.accept(min(left, 1.0))
        if channel is not None:
            return channel
    return None


class SSHServer:
    """Accepts SSH connections, one thread each, within the limits of the settings."""

    def __init__(self, platform: Platform, host: str, port: int) -> None:
        self.platform = platform
        settings = platform.settings
        self.host_keys = load_host_keys(settings.data_dir)
        self.limiter = Limiter(max_total=settings.ssh_max_connections,
                               max_per_source=settings.ssh_max_connections_per_source,
                               rate=settings.ssh_rate_per_source,
                               burst=settings.ssh_burst_per_source,
                               startups=limits.Startups.parse(settings.ssh_max_startups))
        # SCHED_IDLE before authentication where the threads can leave it again, else a
        # nice value (priority.py)
        self.preauth_idle = priority.can_restore()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        # and in a cpu cgroup that is idle machine-wide, where one can be had (removed by
        # stop())
        self.idle_group = IdleGroup.create(settings.instance)
        self._stopped = threading.Event()
        self._refused: Counter[str] = Counter()
        self._refused_logged = float("-inf")

    @property
    def host_key(self) -> paramiko.PKey:
        """The preferred host key (Ed25519)."""
        return self.host_keys[0]

    def serve_forever(self) -> None:
        """Accept until :meth:`stop`. An accept error (EMFILE when the process ran out of
        file descriptors, ENOBUFS, ...) is logged and retried with back-off: SSH comes
        back by itself once the resource does."""
        backoff = 0.0
        logged = 0.0
        while not self._stopped.is_set():
            try:
                conn, peer = self.sock.accept()
            except OSError as exc:
                if self._stopped.is_set():
                    return
                backoff = min(ACCEPT_BACKOFF_MAX, backoff * 2 or ACCEPT_BACKOFF_MIN)
                if time.monotonic() - logged >= ACCEPT_ERROR_LOG_SECONDS:
                    log.error("ssh: cannot accept connections (%s); retrying", exc)
                    logged = time.monotonic()
                self._stopped.wait(backoff)
                continue
            if backoff:
                log.warning("ssh: accepting connections again")
                backoff, logged = 0.0, 0.0
            self._start(conn, peer[0])

    def _start(self, conn: socket.socket, address: str) -> None:
        reason = self.limiter.admit(address)
        wait = None if reason else self.limiter.reserve(address)
        if wait is None:
            if reason is None:
                reason = limits.TOO_FAST
                self.limiter.release(address)
            self._note_refusal(reason)
            _refuse(conn, reason)
            return
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._serve, args=(conn, address, wait), daemon=True,
                             name="ssh-conn").start()
        except (OSError, RuntimeError) as exc:  # no thread to be had: refuse, keep going
            log.error("ssh: cannot serve a connection from %s: %s", address, exc)
            self.limiter.release(address)
            conn.close()

    def _serve(self, conn: socket.socket, address: str, wait: float) -> None:
        lock = threading.Lock()
        state = {"authenticated": False, "released": False}

        def on_authenticated() -> None:  # in the transport thread
            with lock:
                if not (state["authenticated"] or state["released"]):
                    state["authenticated"] = True
                    self.limiter.authenticated()

        flooded = self.limiter.unauthenticated >= idlegroup.FLOOD_AT  # this one counted
        try:
            handle_connection(self.platform, self.host_keys, conn, address, wait,
                              on_authenticated, self.preauth_idle,
                              self.idle_group if flooded else None)
        finally:
            with lock:
                state["released"] = True
                self.limiter.release(address, state["authenticated"])

    def _note_refusal(self, reason: str) -> None:
        """Count refusals; log them at most every REFUSAL_LOG_SECONDS (a flood must not
        flood the log too). Called by the accept thread only."""
        self._refused[reason] += 1
        now = time.monotonic()
        if now - self._refused_logged >= REFUSAL_LOG_SECONDS:
            log.warning("ssh: refused %s", ", ".join(
                f"{n} ({why})" for why, n in sorted(self._refused.items())))
            self._refused.clear()
            self._refused_logged = now

    def stop(self) -> None:
        """Stop accepting; remove the pre-auth cpu cgroup (its threads back in serve's)."""
        self._stopped.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        if self.idle_group is not None:
            self.idle_group.close()
