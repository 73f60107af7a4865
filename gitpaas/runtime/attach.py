"""Interactive streams to a container: ``run`` (attach) and ``enter`` (exec).

The caller hands a ``Terminal``: where the user's input comes from, where output goes,
and the pty size when the user asked for one. Bytes are passed through untouched: no
shell on the host ever sees them.
"""

from __future__ import annotations

import socket
import threading
from typing import Any

from docker.utils.socket import STDERR, frames_iter

from ..terminal import Terminal

__all__ = ["Terminal", "stream"]
CHUNK = 32 * 1024


def raw_socket(sock: Any) -> socket.socket:
    """The socket under docker-py's wrapper of a hijacked connection."""
    raw: socket.socket = getattr(sock, "_sock", sock)
    return raw


def _pump_input(term: Terminal, sock: Any) -> None:
    raw = raw_socket(sock)
    try:
        while True:
            data = term.recv(CHUNK)
            if not data:
                break
            raw.sendall(data)
    except (OSError, EOFError):
        return
    if term.tty:
        # On a pty the end of input is a byte (^D) the user types; half-closing Docker's
        # stream of a pty exec can end it before the command's output is read.
        return
    try:
        raw.shutdown(socket.SHUT_WR)  # the container's stdin sees end of file
    except OSError:
        pass


def stream(sock: Any, term: Terminal) -> None:
    """Copy the user's input to ``sock`` and its output back until the output ends."""
    threading.Thread(target=_pump_input, args=(term, sock), daemon=True,
                     name="attach-stdin").start()
    try:
        for kind, data in frames_iter(sock, term.tty):
            if data:
                (term.err if kind == STDERR else term.out)(data)
    except OSError:
        pass
    finally:
        try:
            raw_socket(sock).close()
        except OSError:
            pass
