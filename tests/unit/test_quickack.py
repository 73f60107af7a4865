"""Issue 17: the SSH server acknowledges what it reads at once (``TCP_QUICKACK``).

OpenSSH's client keeps Nagle on for git; with Linux's delayed ACK that cost 40-47 ms in
every connection's handshake."""

from __future__ import annotations

import socket

import pytest

from gitpaas.ssh import server
from gitpaas.ssh.server import QuickAckSocket

pytestmark = pytest.mark.skipif(not hasattr(socket, "TCP_QUICKACK"), reason="Linux only")


def pair() -> tuple[socket.socket, socket.socket]:
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    accepted, _ = listener.accept()
    listener.close()
    return client, accepted


def quickack(sock: socket.socket) -> int:
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK)


@pytest.mark.parametrize("wrapped", [True, False])
def test_each_read_leaves_the_socket_in_quickack_mode(wrapped):
    client, accepted = pair()
    try:
        accepted.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 0)  # delayed ACKs
        assert quickack(accepted) == 0
        reader = QuickAckSocket(accepted) if wrapped else accepted
        client.sendall(b"NEWKEYS")
        assert reader.recv(64) == b"NEWKEYS"
        assert quickack(accepted) == (1 if wrapped else 0)
    finally:
        client.close()
        accepted.close()


def test_the_wrapper_is_the_socket_for_everything_else():
    client, accepted = pair()
    try:
        wrapped = QuickAckSocket(accepted)
        wrapped.settimeout(2)
        assert wrapped.gettimeout() == 2 and wrapped.fileno() == accepted.fileno()
        wrapped.sendall(b"hi")
        assert client.recv(2) == b"hi"
    finally:
        client.close()
        accepted.close()


def test_the_server_hands_paramiko_the_wrapped_socket(monkeypatch):
    seen = []

    class Stop(Exception):
        pass

    def transport(sock):
        seen.append(sock)
        raise Stop

    monkeypatch.setattr(server, "PreauthTransport", transport)
    client, accepted = pair()
    try:
        platform = type("P", (), {"settings": type("S", (), {"ssh_preauth_timeout": 1})()})()
        with pytest.raises(Stop):
            server.handle_connection(platform, [], accepted)
        assert isinstance(seen[0], QuickAckSocket)
    finally:
        client.close()
        accepted.close()
