"""The user's side of an interactive command (``run``, ``enter``): input, output, pty size."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

log = logging.getLogger(__name__)


class ByteReader(Protocol):
    """A command's standard input: a binary file, or the file of an SSH channel."""

    def read(self, size: int, /) -> bytes:
        """Up to ``size`` bytes; ``b""`` at end of input."""
        ...


@dataclass
class Terminal:
    """The user's side of an interactive command."""

    recv: Callable[[int], bytes]  # b"" at end of input
    out: Callable[[bytes], None]
    err: Callable[[bytes], None]
    size: tuple[int, int] | None = None  # (columns, rows) of the user's pty, if any
    # Set by whoever attaches: called with (columns, rows) when the user's window changes.
    on_resize: Callable[[int, int], None] | None = field(default=None, repr=False)

    @property
    def tty(self) -> bool:
        return self.size is not None

    def resized(self, columns: int, rows: int) -> None:
        """The user's window changed (the SSH server calls this)."""
        self.size = (columns, rows)
        if self.on_resize is not None:
            try:
                self.on_resize(columns, rows)
            except Exception:  # noqa: BLE001 - a failed resize must not end the session
                log.debug("resize failed", exc_info=True)
