"""The SSH server's policy, driven by a raw paramiko client (no OpenSSH niceties)."""

from __future__ import annotations

import os
import stat
import threading

import paramiko
import pytest

from gitpaas import settings as settings_mod
from gitpaas import sshkeys
from gitpaas.platform import Platform
from gitpaas.ssh.server import SSHServer


@pytest.fixture
def ssh_server(tmp_path, redis_url, instance):
    s = settings_mod.load({"data_dir": tmp_path / "data", "instance": instance,
                           "redis_url": redis_url, "git_idle_timeout": 1.5,
                           "lock_timeout": 10}, environ={})
    platform = Platform(s)
    client_key = paramiko.ECDSAKey.generate(bits=256)
    blob = client_key.asbytes()
    platform.store.add_key("admin", sshkeys.fingerprint(blob),
                           f"{client_key.get_name()} {client_key.get_base64()}")
    server = SSHServer(platform, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, client_key, s
    server.stop()


def connect(port: int) -> paramiko.Transport:
    transport = paramiko.Transport(("127.0.0.1", port))
    transport.start_client(timeout=10)
    return transport


def test_host_keys_are_created_0600_and_kept(ssh_server, tmp_path):
    server, _, s = ssh_server
    files = [s.data_dir / "ssh_host_ed25519_key", s.data_dir / "ssh_host_rsa_key"]
    for path in files:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert not (s.data_dir / "ssh_host_ecdsa_key").exists()  # never made any more
    first = [p.read_bytes() for p in files]
    again = SSHServer(server.platform, "127.0.0.1", 0)
    again.stop()
    assert [p.read_bytes() for p in files] == first
    assert [k.get_name() for k in server.host_keys] == ["ssh-ed25519", "ssh-rsa"]
    assert server.host_keys[1].get_bits() >= 3072
    t = connect(server.port)
    assert t.get_remote_server_key().asbytes() == server.host_key.asbytes()
    assert t.host_key_type == "ssh-ed25519"
    t.close()


def test_password_and_unknown_keys_are_refused(ssh_server):
    server, _, _ = ssh_server
    t = connect(server.port)
    with pytest.raises(paramiko.BadAuthenticationType) as info:
        t.auth_password("git", "secret")
    assert info.value.allowed_types == ["publickey"]
    with pytest.raises(paramiko.AuthenticationException):
        t.auth_publickey("git", paramiko.ECDSAKey.generate(bits=256))
    assert not t.is_authenticated()
    with pytest.raises(paramiko.SSHException):
        t.open_session(timeout=5)
    t.close()


def test_only_exec_is_allowed_after_auth(ssh_server):
    server, key, _ = ssh_server
    t = connect(server.port)
    t.auth_publickey("git", key)
    # A pty is granted (run --tty and enter pass it to a container) but gives no shell.
    chan = t.open_session(timeout=5)
    chan.get_pty()
    with pytest.raises(paramiko.SSHException):
        chan.invoke_shell()
    chan.close()
    chan = t.open_session(timeout=5)
    with pytest.raises(paramiko.SSHException):
        chan.invoke_shell()
    chan.close()
    chan = t.open_session(timeout=5)
    with pytest.raises(paramiko.SSHException):
        chan.invoke_subsystem("sftp")
    chan.close()
    with pytest.raises(paramiko.ChannelException):
        t.open_channel("direct-tcpip", ("127.0.0.1", 22), ("127.0.0.1", 5555), timeout=5)
    with pytest.raises(paramiko.SSHException):
        t.request_port_forward("127.0.0.1", 0)
    t.close()


def test_a_pty_gets_crlf_line_ends_and_nothing_else(ssh_server):
    server, key, _ = ssh_server
    t = connect(server.port)
    t.auth_publickey("git", key)
    chan = t.open_session(timeout=5)
    chan.get_pty(width=100, height=30)
    chan.resize_pty(width=120, height=40)
    chan.exec_command("help")
    out = chan.makefile("rb").read().decode()
    assert chan.recv_exit_status() == 0
    assert "\r\n" in out and "\n" not in out.replace("\r\n", "")
    t.close()


def test_exec_runs_a_registered_command(ssh_server):
    server, key, _ = ssh_server
    t = connect(server.port)
    t.auth_publickey("git", key)
    chan = t.open_session(timeout=5)
    chan.exec_command("version")
    out = chan.makefile("rb").read().decode()
    assert chan.recv_exit_status() == 0 and out.startswith("gitpaas ")
    t.close()


@pytest.mark.parametrize("command, message", [
    ("nope", "unknown command 'nope'"),
    ("version\x00x", "NUL or newline"),
    ("version\nid", "NUL or newline"),
    ("git-receive-pack '../x'", "invalid app name"),
    ("git-receive-pack '/etc/passwd'", "invalid app name"),
    ("git-receive-pack 'a/../../b'", "invalid app name"),
    ("git-receive-pack 'x.git.git'", "invalid app name"),
    ("git-upload-pack 'missing.git'", "no app named 'missing'"),
    ("git-receive-pack", "usage"),
])
def test_bad_exec_requests_exit_non_zero_with_a_message(ssh_server, command, message):
    server, key, s = ssh_server
    t = connect(server.port)
    t.auth_publickey("git", key)
    chan = t.open_session(timeout=5)
    chan.exec_command(command)
    err = chan.makefile_stderr("rb").read().decode()
    assert chan.recv_exit_status() != 0
    assert message in err
    t.close()
    repos = s.repos_dir
    assert not repos.exists() or [p.name for p in repos.iterdir()] == []
    assert not (s.data_dir.parent / "b.git").exists()


# -- issue 7, point 6: nothing before public-key auth; strict key exchange ----------------


def test_paramiko_is_a_release_with_strict_kex():
    major, minor = (int(x) for x in paramiko.__version__.split(".")[:2])
    assert (major, minor) >= (3, 4), paramiko.__version__  # Terrapin (CVE-2023-48795) fix


def test_server_advertises_and_agrees_on_strict_kex(ssh_server):
    server, _, _ = ssh_server
    t = paramiko.Transport(("127.0.0.1", server.port))
    seen: list[str] = []
    original = t._parse_kex_init

    def spy(m):  # record the server's KEXINIT algorithm list before paramiko strips it
        pos = m.get_so_far()
        m.rewind()
        m.get_bytes(16)  # the cookie (the message type is read already)
        seen.extend(m.get_list())
        m.rewind()
        m.get_bytes(len(pos))
        return original(m)

    t._parse_kex_init = spy
    t._handler_table[paramiko.common.MSG_KEXINIT] = spy
    t.start_client(timeout=10)
    assert "kex-strict-s-v00@openssh.com" in seen
    assert t.agreed_on_strict_kex
    t.close()


def test_no_channel_exec_or_global_request_before_auth(ssh_server):
    server, _, s = ssh_server
    t = connect(server.port)
    assert not t.is_authenticated()
    with pytest.raises(paramiko.SSHException):
        t.open_session(timeout=5)
    with pytest.raises(paramiko.SSHException):
        t.open_channel("direct-tcpip", ("127.0.0.1", 22), ("127.0.0.1", 5555), timeout=5)
    assert t.global_request("tcpip-forward", wait=True) is None
    t.close()
    # A client that only does the handshake leaves nothing behind.
    assert not s.repos_dir.exists()
    assert server.platform.store.list_apps() == []


def test_none_auth_is_refused(ssh_server):
    server, _, _ = ssh_server
    t = connect(server.port)
    with pytest.raises(paramiko.BadAuthenticationType):
        t.auth_none("git")
    assert not t.is_authenticated()
    t.close()


def test_a_silent_git_client_does_not_hold_the_app_lock(ssh_server):
    """A push that stops sending is cut off after git_idle_timeout; the next one runs."""
    import time

    server, key, _ = ssh_server
    t = connect(server.port)
    t.auth_publickey("git", key)
    silent = t.open_session(timeout=5)
    silent.exec_command("git-receive-pack 'quiet.git'")
    assert silent.recv(65536)  # the ref advertisement; then we send nothing
    started = time.monotonic()
    assert silent.recv_exit_status() != 0 or silent.exit_status_ready()
    assert time.monotonic() - started < 8
    t2 = connect(server.port)
    t2.auth_publickey("git", key)
    second = t2.open_session(timeout=5)
    second.exec_command("git-receive-pack 'quiet.git'")
    second.settimeout(5)
    advertised = b""
    while not advertised.endswith(b"0000"):  # advertised at once: the lock is free
        advertised += second.recv(65536)
    t.close()
    t2.close()
