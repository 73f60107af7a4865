"""Start, adopt, reload, supervise and stop the edge's nginx.

nginx runs as a daemon with its own prefix and pid file under ``<data_dir>/edge``: it is
not a child that dies with ``gitpaas serve``. A ``serve`` that starts while an nginx of
its data dir runs adopts it; a ``serve`` that stops leaves it running. ``gitpaas
edge:stop`` (:meth:`Edge.stop`) stops it.

What a master loaded is recorded in ``<dir>/loaded`` (its pid and a digest of the config,
the default certificate and the Lua modules it read): an adopting ``serve`` reloads nginx
gracefully (SIGHUP: a new Lua VM runs ``init_by_lua`` with the modules on disk; old
workers finish their requests) when that digest differs from what it renders and ships
now, e.g. after an upgrade, and does not signal it at all when nothing differs.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import itertools
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

from ..errors import ServiceError
from ..secrets import write_private_file
from .config import EdgeConfig, render_lua, render_nginx

log = logging.getLogger("gitpaas.edge")
ROTATE_KEEP = 2  # access.log.1 and access.log.2 are kept
LOG_LINE = re.compile(r"\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[\w+\] ")  # a new entry
RELOAD_TIMEOUT = 15.0  # seconds for a SIGHUP'd master to start its new workers


AUTOGROUP_ENABLED = Path("/proc/sys/kernel/sched_autogroup_enabled")


def set_group_priority(pid: int, nice: int) -> bool:
    """Give the scheduling group of nginx's master ``pid`` the workers' priority.

    With autogroup scheduling (Linux's default outside cgroups of their own, e.g. without
    systemd) the CPU is shared between sessions first, and a nice value or SCHED_IDLE only
    ranks threads within one. nginx daemonizes into a session of its own, so
    ``worker_priority`` alone does not put the edge before ``gitpaas serve`` (whose
    pre-auth SSH work runs under SCHED_IDLE, docs/security.md): its group's nice does.
    Only for a master that leads its own session (the group is then nginx's alone).
    False where not applicable or refused."""
    try:
        if AUTOGROUP_ENABLED.read_text().strip() != "1" or os.getsid(pid) != pid:
            return False
        Path(f"/proc/{pid}/autogroup").write_text(f"{nice}\n")
    except OSError as exc:
        log.info("edge: cannot set the priority of nginx's scheduling group: %s", exc)
        return False
    return True


def nginx_binary() -> str:
    """The nginx executable (Debian: /usr/sbin/nginx)."""
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists()
                                      else None)
    if not found:
        raise ServiceError("nginx is not installed (Debian: nginx libnginx-mod-http-lua)")
    return found


def _write_if_changed(path: Path, text: str, private: bool = False) -> bool:
    """Replace ``path`` atomically (mode 0600 if ``private``) unless it holds ``text``
    already; True if written."""
    data = text.encode()
    try:
        if path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    return True


def make_self_signed(crt: Path, key: Path, name: str = "gitpaas-default") -> None:
    """A self-signed certificate for clients whose SNI name has no certificate file."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    private = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(private.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .sign(private, hashes.SHA256()))
    write_private_file(key, private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


class ReloadLog:
    """What nginx's master ``pid`` logs after now (the end of ``path``) about a reload
    that failed. Only lines the master writes itself count, matched from the start of
    the message: ``[emerg] <pid>#<tid>: ...`` (e.g. a bind() that fails) and
    ``<pid>#<tid>: init_by_lua error`` (a Lua module that does not load). A worker's
    line quoting what a client sent (``client: ..., request: "POST /[emerg]..."``) has
    the worker's pid and a ``*<connection>`` first, and never matches. Read as it grows
    (a flood of such lines neither fails the check nor hides the master's line); the
    failure returned is the master's line and its continuation (a Lua traceback), no
    other line."""

    CHUNK = 1 << 20  # bytes read per look

    def __init__(self, path: Path, pid: int) -> None:
        self.path = path
        try:
            self.offset = path.stat().st_size
        except OSError:
            self.offset = 0
        self.partial = b""
        self.failed = re.compile(
            rf"^\d{{4}}/\d\d/\d\d \d\d:\d\d:\d\d (?:\[emerg\] {pid}#\d+: "
            rf"|\[\w+\] {pid}#\d+: init_by_lua error)")

    def failure(self) -> str:
        """The master's failure line (and what follows it, e.g. a Lua traceback) if it
        logged one since the last look, else ''."""
        try:
            with self.path.open("rb") as f:
                f.seek(self.offset)
                data = f.read(self.CHUNK)
        except OSError:
            return ""
        self.offset += len(data)
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        text = [line.decode(errors="replace") for line in lines]
        for n, line in enumerate(text):
            if self.failed.match(line):
                more = itertools.takewhile(lambda x: not LOG_LINE.match(x), text[n + 1:])
                return "\n".join([line, *more])[:800].strip()
        return ""


class Edge:
    """One nginx instance, known by its directory (config, pid file, logs, certs)."""

    def __init__(self, config: EdgeConfig) -> None:
        self.config = config
        self._workers: set[int] = set()

    # -- files ----------------------------------------------------------------------------

    def write_config(self) -> bool:
        """Render nginx.conf and conf.lua (and the default certificate); True if changed."""
        c = self.config
        for sub in ("logs", "tmp", "certs"):
            (c.directory / sub).mkdir(parents=True, exist_ok=True)
        c.directory.chmod(0o700)
        crt, key = c.default_cert
        if not (crt.exists() and key.exists()):
            make_self_signed(crt, key)
        changed = _write_if_changed(c.lua_conf_path, render_lua(c), private=True)
        return _write_if_changed(c.conf_path, render_nginx(c)) or changed

    def _command(self, *extra: str) -> list[str]:
        c = self.config
        return [nginx_binary(), "-p", str(c.directory), "-c", str(c.conf_path),
                "-e", str(c.error_log_path), *extra]

    def test_config(self) -> None:
        """``nginx -t``: raise ServiceError with nginx's message when the config is bad."""
        result = subprocess.run(self._command("-t", "-q"), capture_output=True, text=True,
                                timeout=60)
        if result.returncode != 0:
            raise ServiceError(f"nginx refused its config: {result.stderr.strip()[-800:]}")

    # -- the process ----------------------------------------------------------------------

    def pid(self) -> int | None:
        """The master's pid when an nginx of this directory runs, else None."""
        try:
            pid = int(self.config.pid_path.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        if str(self.config.conf_path).encode() not in cmdline:
            return None  # a stale pid file: the number belongs to another process now
        try:
            status = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return None
        return None if status == "Z" else pid

    def running(self) -> bool:
        return self.pid() is not None

    def start(self, timeout: float = 30.0) -> int:
        """Adopt the running nginx of this directory (reloading it if what it loaded
        differs from the config and Lua on disk now), or start one. Returns the master's
        pid once it listens."""
        self.write_config()
        pid = self.pid()
        if pid is not None:
            if self.reload_if_changed(pid):
                log.info("edge: adopted nginx (pid %d), config or Lua changed: reloaded", pid)
            else:
                log.info("edge: adopted nginx (pid %d)", pid)
            pid = self.wait_ready(timeout)  # it may have been starting itself
        else:
            self.test_config()
            digest = self.fingerprint()
            result = subprocess.run(self._command(), capture_output=True, text=True,
                                    timeout=60, stdin=subprocess.DEVNULL)
            if result.returncode != 0:
                raise ServiceError(f"nginx did not start: {result.stderr.strip()[-800:]}")
            log.info("edge: nginx started")
            pid = self.wait_ready(timeout)
            self._record_loaded(pid, digest)
        if os.geteuid() == 0:
            set_group_priority(pid, self.config.worker_priority)
        return pid

    # -- what the running master loaded ---------------------------------------------------

    def fingerprint(self) -> str:
        """A digest of what a (re)loading nginx reads: nginx.conf, conf.lua, the default
        certificate and every Lua module of ``lua_dir``."""
        c = self.config
        digest = hashlib.sha256()
        files = [c.conf_path, c.lua_conf_path, *c.default_cert,
                 *sorted(c.lua_dir.glob("*.lua"))]
        for path in files:
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                data = b""
            digest.update(f"{path}\0{len(data)}\0".encode())
            digest.update(data)
        return digest.hexdigest()

    @property
    def _loaded_path(self) -> Path:
        return self.config.directory / "loaded"

    def loaded(self) -> tuple[int, str] | None:
        """(master pid, fingerprint) of what the running master last (re)loaded, if known."""
        try:
            pid, digest = self._loaded_path.read_text().split()
            return int(pid), digest
        except (OSError, ValueError):
            return None

    def _record_loaded(self, pid: int, digest: str) -> None:
        _write_if_changed(self._loaded_path, f"{pid} {digest}\n")

    def reload_if_changed(self, pid: int) -> bool:
        """Reload the master ``pid`` (after ``nginx -t``) unless it loaded exactly what is
        on disk now; wait until its new workers run. True if it was reloaded."""
        digest = self.fingerprint()
        if self.loaded() == (pid, digest):
            return False
        self.test_config()
        self._hup(pid)
        self._record_loaded(pid, digest)
        return True

    def _children(self, pid: int) -> set[int]:
        try:
            return {int(c) for c in
                    Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}
        except (OSError, ValueError):
            return set()

    def _hup(self, pid: int, timeout: float = RELOAD_TIMEOUT) -> None:
        """SIGHUP: nginx starts workers of the new config (a new Lua VM) and lets the old
        ones finish; return once new connections go to the new ones. Raise ServiceError
        when no new worker comes (nginx then logged why, e.g. a Lua error ``nginx -t``
        does not see, and serves on with the old config)."""
        before = self._children(pid)
        watch = ReloadLog(self.config.error_log_path, pid)
        os.kill(pid, signal.SIGHUP)
        if not before:
            return  # children unknown (no /proc/.../children): nothing to compare with
        deadline = time.monotonic() + timeout
        while not self._reloaded(pid, before):
            failed = watch.failure()
            if failed or time.monotonic() > deadline or self.pid() != pid:
                raise ServiceError(f"nginx did not reload: {failed or self.error_tail(800)}")
            time.sleep(0.02)

    def _reloaded(self, pid: int, before: set[int]) -> bool:
        """Whether the master runs new workers and every worker of ``before`` stopped
        accepting (nginx titles it "worker process is shutting down" as it closes its
        listening sockets; it exits once its requests are done)."""
        children = self._children(pid)
        if not children - before:
            return False
        for old in children & before:
            try:
                if b"shutting down" not in Path(f"/proc/{old}/cmdline").read_bytes():
                    return False
            except OSError:
                continue  # exited
        return True

    def wait_ready(self, timeout: float = 30.0) -> int:
        """Wait until the master's pid file exists and the HTTP port accepts."""
        deadline = time.monotonic() + timeout
        host, port = self.config.listen
        host = "127.0.0.1" if host in ("0.0.0.0", "") else ("::1" if host == "::" else host)
        while True:
            pid = self.pid()
            if pid is not None:
                try:
                    socket.create_connection((host, port), 0.5).close()
                    return pid
                except OSError:
                    pass
            if time.monotonic() > deadline:
                raise ServiceError(f"nginx did not come up: {self.error_tail()}")
            time.sleep(0.02)

    def reload(self) -> bool:
        """Re-render; if the running nginx loaded something else than what is on disk
        now (config or Lua), check it and reload it gracefully. True if reloaded."""
        self.write_config()
        pid = self.pid()
        return pid is not None and self.reload_if_changed(pid)

    def stop(self, graceful: bool = True, timeout: float = 15.0) -> bool:
        """Stop nginx (SIGQUIT: finish requests under way; then SIGTERM, SIGKILL).
        False when none was running."""
        pid = self.pid()
        if pid is None:  # maybe workers a killed master left behind
            orphans = self._own_processes()
            self._kill_orphan_workers()
            return bool(orphans)
        for sig, wait in ((signal.SIGQUIT if graceful else signal.SIGTERM, timeout),
                          (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                if self.pid() is None:
                    return True
                time.sleep(0.02)
        return True

    def error_tail(self, size: int = 1500) -> str:
        try:
            return self.config.error_log_path.read_text(errors="replace")[-size:]
        except OSError:
            return ""

    # -- supervision ----------------------------------------------------------------------

    def rotate_logs(self) -> bool:
        """When access.log outgrew its limit: shift it to .1 (.1 to .2) and have nginx
        reopen its logs (SIGUSR1). True if rotated."""
        path = self.config.access_log_path
        try:
            if path.stat().st_size < self.config.access_log_max_bytes:
                return False
        except FileNotFoundError:
            return False
        for i in range(ROTATE_KEEP - 1, 0, -1):
            older = path.with_name(f"{path.name}.{i}")
            if older.exists():
                os.replace(older, path.with_name(f"{path.name}.{i + 1}"))
        os.replace(path, path.with_name(f"{path.name}.1"))
        pid = self.pid()
        if pid is not None:
            os.kill(pid, signal.SIGUSR1)
        return True

    def _note_workers(self, pid: int) -> None:
        """Remember the master's workers: if the master is killed, they would keep the
        ports and the next master could not bind them."""
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            self._workers = {int(c) for c in children}
        except (OSError, ValueError):
            pass

    def _own_processes(self) -> set[int]:
        """nginx processes holding this edge's error log open (a killed master's workers
        among them): found in /proc, so that a fresh supervisor finds them too."""
        target = str(self.config.error_log_path)
        found = set()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if not (entry / "cmdline").read_bytes().startswith(b"nginx: "):
                    continue
                if any(os.readlink(fd) == target for fd in (entry / "fd").iterdir()):
                    found.add(int(entry.name))
            except OSError:
                continue
        return found

    def _kill_orphan_workers(self) -> None:
        for pid in self._workers | self._own_processes():
            try:
                if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"nginx: "):
                    os.kill(pid, signal.SIGKILL)
            except (OSError, ProcessLookupError):
                pass
        self._workers = set()

    def supervise(self, stop: threading.Event, interval: float = 1.0) -> None:
        """Until ``stop``: restart nginx if it died (killing workers its master left
        behind), rotate the access log."""
        while not stop.wait(interval):
            try:
                pid = self.pid()
                if pid is None:
                    log.warning("edge: nginx is not running: starting it")
                    self._kill_orphan_workers()
                    pid = self.start()
                self._note_workers(pid)
                self.rotate_logs()
            except Exception as exc:  # noqa: BLE001 - the supervisor must outlive one failure
                log.warning("edge: supervision: %s", exc)

    def start_supervised(self, interval: float = 1.0) -> threading.Event:
        """Start (or adopt) nginx, then supervise it on a daemon thread; set the event to
        stop supervising (nginx keeps running)."""
        self._note_workers(self.start())
        stop = threading.Event()
        threading.Thread(target=self.supervise, args=(stop, interval), daemon=True,
                         name="edge-supervisor").start()
        return stop
