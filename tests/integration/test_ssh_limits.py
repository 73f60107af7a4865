"""Issue 11, findings 6 and 8: the SSH server's caps, throttle, pre-auth timeout and
algorithms, against a real server with raw sockets and a raw paramiko client.

Sources other than 127.0.0.1 are other loopback addresses (127.0.0.2, ...): the traffic
still goes to 127.0.0.1 only.
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import threading
import time

import paramiko
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gitpaas import settings as settings_mod
from gitpaas import sshkeys
from gitpaas.platform import Platform
from gitpaas.ssh import crypto
from gitpaas.ssh.server import SSHServer
from tests.harness import wait_for


@pytest.fixture
def make_server(tmp_path, redis_url, instance):
    """Start an SSH server with the given settings; returns (server, client key)."""
    started: list[SSHServer] = []

    def make(data_dir_name: str = "data", **overrides) -> tuple[SSHServer, paramiko.PKey]:
        s = settings_mod.load({"data_dir": tmp_path / data_dir_name, "instance": instance,
                               "redis_url": redis_url, **overrides}, environ={})
        platform = Platform(s)
        key = paramiko.Ed25519Key.from_private_key(io.StringIO(
            _ed25519_pem()))
        platform.store.add_key("admin", sshkeys.fingerprint(key.asbytes()),
                               f"{key.get_name()} {key.get_base64()}")
        server = SSHServer(platform, "127.0.0.1", 0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        started.append(server)
        return server, key

    yield make
    for server in started:
        server.stop()


def _ed25519_pem() -> str:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    return ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption()).decode()


def raw(port: int, source: str = "127.0.0.1") -> socket.socket:
    """A TCP connection to the server from ``source`` (a loopback address)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10,
                                    source_address=(source, 0))
    return sock


def first_line(sock: socket.socket, timeout: float = 10) -> bytes:
    """What the server says first: its SSH banner, a refusal, or b"" when it closed."""
    sock.settimeout(timeout)
    data = b""
    while b"\n" not in data:
        chunk = sock.recv(256)
        if not chunk:
            break
        data += chunk
    return data


def exec_version(port: int, key: paramiko.PKey) -> str:
    t = paramiko.Transport(("127.0.0.1", port))
    try:
        t.start_client(timeout=10)
        t.auth_publickey("git", key)
        chan = t.open_session(timeout=10)
        chan.exec_command("version")
        return chan.makefile("rb").read().decode()
    finally:
        t.close()


# -- caps ---------------------------------------------------------------------------------


def test_per_source_cap_refuses_before_the_banner_and_spares_other_sources(make_server):
    server, key = make_server(ssh_max_connections_per_source=3, ssh_rate_per_source=0)
    held = [raw(server.port, "127.0.0.2") for _ in range(3)]
    assert all(first_line(s).startswith(b"SSH-2.0-") for s in held)
    extra = raw(server.port, "127.0.0.2")
    line = first_line(extra)
    assert line.startswith(b"gitpaas: too many connections from one source"), line
    assert extra.recv(10) == b""  # closed: no banner, no key exchange
    # Another source is served meanwhile, and the capped one again once a slot is free.
    assert exec_version(server.port, key).startswith("gitpaas ")
    held.pop().close()
    wait_for(lambda: server.limiter.connections("127.0.0.2") <= 2, 5,
             "the closed connection's slot")
    again = raw(server.port, "127.0.0.2")
    assert first_line(again).startswith(b"SSH-2.0-")
    for s in [*held, extra, again]:
        s.close()


def test_global_cap(make_server):
    server, key = make_server(ssh_max_connections=4, ssh_rate_per_source=0)
    held = [raw(server.port, f"127.0.0.{i}") for i in range(2, 6)]
    assert all(first_line(s).startswith(b"SSH-2.0-") for s in held)
    extra = raw(server.port, "127.0.0.9")
    assert first_line(extra).startswith(b"gitpaas: too many connections,")
    for s in held:
        s.close()
    wait_for(lambda: server.limiter.total == 0, 5, "every slot given back")
    assert exec_version(server.port, key).startswith("gitpaas ")
    extra.close()


# -- pre-auth throttle (DHEat) -------------------------------------------------------------


def test_a_burst_from_one_source_is_paced_then_refused(make_server):
    server, key = make_server(ssh_rate_per_source=5, ssh_burst_per_source=3)
    began = time.monotonic()
    socks = [raw(server.port, "127.0.0.3") for _ in range(10)]
    lines = []
    for s in socks:
        lines.append((first_line(s), time.monotonic() - began))
    banners = [t for line, t in lines if line.startswith(b"SSH-2.0-")]
    refused = [line for line, _ in lines if line.startswith(b"gitpaas: connections too fast")]
    # 3 at once (the burst), 3 more paced at 5 a second, the other 4 refused at once.
    assert len(banners) == 6 and len(refused) == 4, lines
    assert max(banners) >= 0.5  # the 6th waited 3/5 s for its token
    assert exec_version(server.port, key).startswith("gitpaas ")  # 127.0.0.1 unaffected
    for s in socks:
        s.close()


# -- pre-auth timeout --------------------------------------------------------------------


def test_a_connection_that_does_not_authenticate_is_closed(make_server):
    server, key = make_server(ssh_preauth_timeout=1.5)
    silent = raw(server.port)
    assert first_line(silent).startswith(b"SSH-2.0-")
    began = time.monotonic()
    silent.settimeout(10)
    assert silent.recv(100) == b""  # sent nothing at all: closed
    assert 1.0 < time.monotonic() - began < 5
    # Key exchange done, never authenticated: closed too, and its slot given back.
    t = paramiko.Transport(("127.0.0.1", server.port))
    t.start_client(timeout=10)
    wait_for(lambda: not t.is_active(), 6, "the server to close the connection")
    t.close()
    wait_for(lambda: server.limiter.total == 0, 5, "its slot given back")
    # Authenticated clients are not cut off by it (a session longer than the timeout).
    t = paramiko.Transport(("127.0.0.1", server.port))
    t.start_client(timeout=10)
    t.auth_publickey("git", key)
    chan = t.open_session(timeout=10)
    time.sleep(2)
    chan.exec_command("version")
    assert chan.makefile("rb").read().decode().startswith("gitpaas ")
    t.close()


def _serving_threads() -> set[int]:
    """The native ids of the threads serving an SSH connection now (any server's)."""
    from gitpaas.ssh.server import PreauthTransport

    return {t.native_id for t in threading.enumerate() if t.is_alive() and t.native_id and (
        isinstance(t, PreauthTransport) or t.name == "ssh-conn")}


def _preauth_priorities(earlier: frozenset[int] = frozenset()) -> list[tuple[int, int]]:
    """(policy, nice) of every thread serving an SSH connection now, but the ``earlier``
    ones (an earlier test's session still closing): the connection's own thread and
    paramiko's transport thread."""
    found = []
    for native_id in sorted(_serving_threads() - earlier):
        try:
            found.append((os.sched_getscheduler(native_id),
                          os.getpriority(os.PRIO_PROCESS, native_id)))
        except OSError:  # ended meanwhile
            pass
    return found


class Impostor(paramiko.Ed25519Key):
    """A client that shows a registered public key (public keys are public) but signs
    with a key of its own."""

    def __init__(self, shown: paramiko.PKey) -> None:
        super().__init__(file_obj=io.StringIO(_ed25519_pem()))
        self.shown = shown

    def asbytes(self) -> bytes:
        return self.shown.asbytes()


def test_key_exchange_runs_at_idle_priority_until_authenticated(make_server):
    """An anonymous client's key exchange and login attempts run under SCHED_IDLE (any
    other thread that wants the CPU, nginx's first, preempts them); showing a registered
    public key without its private key changes nothing; an authenticated session gets the
    server's normal priority back, in both of its threads."""
    server, key = make_server()
    base = (os.sched_getscheduler(0), os.getpriority(os.PRIO_PROCESS, 0))
    assert base[0] == os.SCHED_OTHER
    assert server.preauth_idle  # root here (CI): SCHED_IDLE can be left again
    earlier = frozenset(_serving_threads())
    t = paramiko.Transport(("127.0.0.1", server.port))
    try:
        t.start_client(timeout=10)
        assert _preauth_priorities(earlier) == [(os.SCHED_IDLE, base[1])] * 2
        with pytest.raises(paramiko.AuthenticationException):
            t.auth_publickey("git", Impostor(key))
        assert _preauth_priorities(earlier) == [(os.SCHED_IDLE, base[1])] * 2
        assert server.limiter.unauthenticated == 1
        t.auth_publickey("git", key)
        chan = t.open_session(timeout=10)
        wait_for(lambda: _preauth_priorities(earlier) == [base] * 2, 5,
                 "the normal priority back")
        assert server.limiter.unauthenticated == 0
        chan.exec_command("version")
        assert chan.makefile("rb").read().decode().startswith("gitpaas ")
    finally:
        t.close()
    wait_for(lambda: server.limiter.total == 0, 5, "its slot given back")
    assert server.limiter.unauthenticated == 0


def test_without_the_privilege_to_raise_it_back_pre_auth_work_is_only_niced():
    """Where SCHED_IDLE could not be left again (no root, CAP_SYS_NICE or RLIMIT_NICE),
    the pre-auth threads are niced by PREAUTH_NICE instead."""
    from gitpaas.ssh import priority

    seen: list[tuple[int, int]] = []

    def run() -> None:
        before = priority.current()
        priority.lower(idle=False)
        now = priority.current()
        seen.append((now.policy, now.nice - before.nice))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    base_nice = os.getpriority(os.PRIO_PROCESS, 0)
    assert seen == [(os.SCHED_OTHER, min(19, base_nice + priority.PREAUTH_NICE) - base_nice)]


def _idle_cgroup_available() -> str | None:
    """Why this host cannot have the pre-auth idle cgroup (None: it can)."""
    from gitpaas.ssh import idlegroup

    found = idlegroup.cpu_hierarchy()
    if found is None:
        return "no cgroup v1 cpu hierarchy (a cgroup v2 host): the documented fallback"
    if not (found[0] / "cpu.idle").exists():
        return "this kernel has no cpu.idle (Linux < 5.15)"
    if os.statvfs(found[0]).f_flag & os.ST_RDONLY:
        return "the cgroup fs is mounted read-only here (a container)"
    if os.geteuid() != 0:
        return "only root may make a cgroup"
    mapped = idlegroup.IdleGroup(found[0], *found).tasks_file(idlegroup.thread_cgroup())
    if mapped is None or not mapped.is_file():
        return "this process's cpu cgroup is not under the mounted hierarchy (a namespace)"
    return None


def _cpu_cgroups(native_ids: set[int]) -> set[str | None]:
    from gitpaas.ssh import idlegroup

    return {idlegroup.thread_cgroup(t) for t in native_ids}


def test_pre_auth_threads_sit_in_an_idle_cpu_cgroup_until_authenticated(make_server):
    """SCHED_IDLE ranks threads within one scheduling group only; the pre-auth threads also
    sit in a cpu cgroup with cpu.idle set, at the top of the hierarchy, so that serve's
    group does not keep its share for them. Both threads leave it on authentication; the
    group is gone when the server stops."""
    from gitpaas.ssh import idlegroup

    why = _idle_cgroup_available()
    if why is not None:  # serve runs without it, its threads stay where they are
        server, key = make_server()
        assert server.idle_group is None
        assert exec_version(server.port, key).startswith("gitpaas ")
        pytest.skip(f"{why}: checked only that SSH works without the idle cgroup")
    server, key = make_server()
    group = server.idle_group
    assert group is not None and group.path.is_dir()
    assert (group.path / "cpu.idle").read_text().strip() == "1"
    assert group.path.parent == idlegroup.cpu_hierarchy()[0]  # the top: idle machine-wide
    home = idlegroup.thread_cgroup()
    inside = "/" + group.path.name if idlegroup.cpu_hierarchy()[1] == "/" else None
    # a lone connection is no flood: its threads stay in serve's group (a pre-auth thread
    # preempted with the interpreter lock would stall all of serve until the machine idles)
    earlier = frozenset(_serving_threads())
    lone = paramiko.Transport(("127.0.0.1", server.port))
    lone.start_client(timeout=10)
    mine = _serving_threads() - earlier
    assert len(mine) == 2 and not mine & set(group.tids())
    assert _cpu_cgroups(mine) == {home}
    lone.close()
    wait_for(lambda: server.limiter.unauthenticated == 0, 10, "the lone client gone")
    # with FLOOD_AT connections not yet authenticated, the last one goes into the group
    flood = [paramiko.Transport(("127.0.0.1", server.port))
             for _ in range(idlegroup.FLOOD_AT - 1)]
    for other in flood:
        other.start_client(timeout=10)
    assert not set(group.tids())  # each of them came below FLOOD_AT
    earlier = frozenset(_serving_threads())
    t = paramiko.Transport(("127.0.0.1", server.port))
    try:
        t.start_client(timeout=10)
        mine = _serving_threads() - earlier
        assert len(mine) == 2 and set(group.tids()) >= mine
        if inside is not None:
            assert _cpu_cgroups(mine) == {inside}
        with pytest.raises(paramiko.AuthenticationException):
            t.auth_publickey("git", Impostor(key))
        assert set(group.tids()) >= mine  # showing a registered public key is no proof
        t.auth_publickey("git", key)
        chan = t.open_session(timeout=10)
        wait_for(lambda: not (_serving_threads() - earlier) & set(group.tids()), 5,
                 "both threads out of the idle group")
        assert _cpu_cgroups(_serving_threads() - earlier) == {home}
        chan.exec_command("version")
        assert chan.makefile("rb").read().decode().startswith("gitpaas ")
        assert _preauth_priorities(earlier) == [(os.SCHED_OTHER, os.getpriority(
            os.PRIO_PROCESS, 0))] * len(_serving_threads() - earlier)
    finally:
        t.close()
    # a client still in its key exchange when the server stops: moved out, group removed
    held = paramiko.Transport(("127.0.0.1", server.port))
    held.start_client(timeout=10)
    assert group.tids()
    server.stop()
    assert not group.path.exists()
    for other in [held, *flood]:
        other.close()


def test_a_group_left_by_a_killed_serve_is_removed_by_the_next(make_server, instance):
    """A serve killed (no stop) leaves its group, empty once its threads died: the next
    serve removes it; a group of a serve still running stays."""
    from gitpaas.ssh import idlegroup

    why = _idle_cgroup_available()
    if why is not None:
        pytest.skip(why)
    mount = idlegroup.cpu_hierarchy()[0]
    gone = subprocess.Popen(["true"])
    gone.wait()
    left = mount / idlegroup.NAME.format(instance=instance, pid=gone.pid, n=1)
    alive = mount / idlegroup.NAME.format(instance=instance, pid=1, n=1)  # running
    left.mkdir()
    alive.mkdir()
    try:
        server, _ = make_server()
        assert server.idle_group is not None
        assert not left.exists() and alive.exists()
    finally:
        for path in (left, alive):
            if path.exists():
                path.rmdir()


def test_without_a_writable_cgroup_fs_ssh_works_as_before(make_server, tmp_path,
                                                         monkeypatch, caplog):
    """No cpu cgroup to be had (here: a hierarchy that is a plain directory, as a read-only
    or foreign file system): one line in the log, pre-auth threads under SCHED_IDLE in
    serve's group, logins as before, nothing left behind."""
    from gitpaas.ssh import idlegroup

    fake = tmp_path / "not-a-cgroup-fs"
    fake.mkdir()
    monkeypatch.setattr(idlegroup, "cpu_hierarchy", lambda *a: (fake, "/"))
    with caplog.at_level("INFO", logger="gitpaas.ssh.idlegroup"):
        server, key = make_server()
    assert server.idle_group is None
    assert [r.message for r in caplog.records if "pre-auth" in r.message]
    assert list(fake.iterdir()) == []
    earlier = frozenset(_serving_threads())
    home = {idlegroup.thread_cgroup()}
    t = paramiko.Transport(("127.0.0.1", server.port))
    try:
        t.start_client(timeout=10)
        assert _preauth_priorities(earlier) == [(os.SCHED_IDLE, os.getpriority(
            os.PRIO_PROCESS, 0))] * 2
        assert _cpu_cgroups(_serving_threads() - earlier) == home
        t.auth_publickey("git", key)
        chan = t.open_session(timeout=10)
        chan.exec_command("version")
        assert chan.makefile("rb").read().decode().startswith("gitpaas ")
    finally:
        t.close()


def test_a_serve_that_may_not_make_cgroups_does_without(instance):
    """Not root (EACCES on the cgroup fs): no group, no error."""
    from gitpaas.ssh import idlegroup

    found = idlegroup.cpu_hierarchy()
    if found is None:
        pytest.skip("no cgroup v1 cpu hierarchy (a cgroup v2 host): nothing to refuse")
    if os.geteuid() != 0:
        pytest.skip("needs root to drop to another user")
    before = set(os.listdir(found[0]))
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 2
        try:
            os.setgid(65534)
            os.setuid(65534)
            code = 0 if idlegroup.IdleGroup.create(instance) is None else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert set(os.listdir(found[0])) == before


# -- MaxStartups ---------------------------------------------------------------------------


def test_unauthenticated_connections_are_capped_across_sources_not_sessions(make_server):
    """With ssh_max_startups 3 (= 3:100:3), three connections from three sources that never
    log in shut out a fourth source, before the banner; a session that logged in before
    keeps working; once they are gone, new clients get in again."""
    server, key = make_server(ssh_max_startups="3", ssh_rate_per_source=0)
    session = paramiko.Transport(("127.0.0.1", server.port))
    try:
        session.start_client(timeout=10)
        session.auth_publickey("git", key)
        wait_for(lambda: server.limiter.unauthenticated == 0, 5, "the login counted")
        held = [raw(server.port, f"127.0.0.{i}") for i in range(2, 5)]
        assert all(first_line(s).startswith(b"SSH-2.0-") for s in held)
        extra = raw(server.port, "127.0.0.9")
        line = first_line(extra)
        assert line.startswith(b"gitpaas: too many unauthenticated connections"), line
        assert extra.recv(10) == b""
        chan = session.open_session(timeout=10)  # the logged-in client is not affected
        chan.exec_command("version")
        assert chan.makefile("rb").read().decode().startswith("gitpaas ")
        for s in [*held, extra]:
            s.close()
        wait_for(lambda: server.limiter.unauthenticated == 0, 5, "the startups given back")
        assert exec_version(server.port, key).startswith("gitpaas ")
    finally:
        session.close()


# -- accept errors -----------------------------------------------------------------------


def test_accept_errors_are_retried(make_server):
    """An accept that fails (as with EMFILE) does not end the accept loop."""
    server, key = make_server()
    real = server.sock
    failures = {"left": 5}

    class Flaky:
        def accept(self):
            if failures["left"]:
                failures["left"] -= 1
                raise OSError(24, "Too many open files")
            return real.accept()

        def __getattr__(self, name):
            return getattr(real, name)

    server.sock = Flaky()
    # The loop is blocked in the real accept: the first connection wakes it, the next
    # accepts fail 5 times, then the second connection is served.
    assert exec_version(server.port, key).startswith("gitpaas ")
    assert exec_version(server.port, key).startswith("gitpaas ")
    assert failures["left"] == 0


# -- algorithms ----------------------------------------------------------------------------


def server_kexinit(port: int) -> list[list[str]]:
    """The algorithm lists of the server's KEXINIT (read off the wire)."""
    sock = raw(port)
    sock.sendall(b"SSH-2.0-probe\r\n")
    sock.settimeout(10)
    data = b""
    while b"\n" not in data:
        data += sock.recv(4096)
    data = data.split(b"\n", 1)[1]
    while len(data) < 5 or len(data) < 4 + int.from_bytes(data[:4], "big"):
        data += sock.recv(65536)
    sock.close()
    msg = paramiko.Message(data[5:5 + int.from_bytes(data[:4], "big") - 1])
    assert msg.get_byte() == bytes([20])  # MSG_KEXINIT
    msg.get_bytes(16)
    return [msg.get_list() for _ in range(10)]


def test_only_allow_listed_algorithms_are_offered(make_server):
    server, _ = make_server()
    kex, keys, enc, _, mac, _, comp, _, _, _ = server_kexinit(server.port)
    assert kex == ["mlkem768x25519-sha256", "curve25519-sha256@libssh.org",
                   "kex-strict-s-v00@openssh.com"]
    assert keys == ["ssh-ed25519", "rsa-sha2-512", "rsa-sha2-256"]
    assert enc == ["aes256-gcm@openssh.com", "aes128-gcm@openssh.com", "aes256-ctr",
                   "aes192-ctr", "aes128-ctr"]
    assert mac == ["hmac-sha2-512-etm@openssh.com", "hmac-sha2-256-etm@openssh.com"]
    assert comp == ["none"]
    weak = ("cbc", "3des", "md5", "sha1", "nistp", "diffie-hellman", "ssh-rsa")
    assert not [a for a in kex + keys + enc + mac for w in weak if w in a]
    assert set(kex) - {"kex-strict-s-v00@openssh.com"} <= set(crypto.KEX)


@pytest.mark.parametrize("kind, names", [
    ("ciphers", ["aes128-cbc", "aes256-cbc", "3des-cbc"]),
    ("digests", ["hmac-sha1", "hmac-md5", "hmac-sha1-96", "hmac-md5-96"]),
    ("kex", ["ecdh-sha2-nistp256", "ecdh-sha2-nistp384", "ecdh-sha2-nistp521",
             "diffie-hellman-group14-sha256"]),
    # 65 ms of the server's CPU per key exchange (modexp in Python) against 1 ms: DHEat
    ("kex", ["diffie-hellman-group16-sha512", "diffie-hellman-group-exchange-sha256"]),
    ("key_types", ["ecdsa-sha2-nistp256"]),
])
def test_a_client_offering_only_weak_algorithms_is_refused(make_server, kind, names):
    server, _ = make_server()
    t = paramiko.Transport(("127.0.0.1", server.port))
    setattr(t.get_security_options(), kind, names)
    with pytest.raises(paramiko.SSHException):
        t.start_client(timeout=10)
    t.close()


def test_a_legacy_ecdsa_host_key_is_kept_last_for_pinned_clients(make_server, tmp_path):
    legacy = tmp_path / "old" / "ssh_host_ecdsa_key"
    legacy.parent.mkdir()
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption())
    legacy.write_bytes(pem)
    legacy.chmod(0o600)
    server, key = make_server("old")
    _, keys, *_ = server_kexinit(server.port)
    assert keys == ["ssh-ed25519", "rsa-sha2-512", "rsa-sha2-256", "ecdsa-sha2-nistp256"]
    # A client that knows only the old key (as OpenSSH does when known_hosts holds it)
    # still gets that very key.
    t = paramiko.Transport(("127.0.0.1", server.port))
    t.get_security_options().key_types = ["ecdsa-sha2-nistp256"]
    t.start_client(timeout=10)
    assert t.get_remote_server_key().asbytes() == paramiko.ECDSAKey(
        filename=str(legacy)).asbytes()
    t.close()
    assert legacy.read_bytes() == pem
