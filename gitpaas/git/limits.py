"""A cap on the size of each object of an incoming pack.

dulwich caps the pack's total size (``receive.maxInputSize``) but inflates every object
in memory: a 200 KB push can hold a 200 MB blob of zeros, or a small delta that expands a
base to gigabytes. While a receive-pack session runs on a thread, ``object_size_cap``
makes dulwich refuse any object (or delta result) declared larger than the cap, before it
is inflated. dulwich is pinned (``==1.2.21``): these wrap two of its module functions,
looked up at call time, and act only on the thread that set a cap.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dulwich import pack as dulwich_pack
from dulwich.errors import ApplyDeltaError
from dulwich.object_store import PackInputTooLarge

_state = threading.local()
_installed = False


@contextmanager
def object_size_cap(max_bytes: int | None) -> Iterator[None]:
    """Refuse objects larger than ``max_bytes`` read on this thread while inside."""
    install()
    previous = getattr(_state, "cap", None)
    _state.cap = max_bytes if max_bytes and max_bytes > 0 else None
    try:
        yield
    finally:
        _state.cap = previous


def _cap() -> int | None:
    return getattr(_state, "cap", None)


def current_cap() -> int | None:
    """The cap ``object_size_cap`` set on this thread (None: no cap)."""
    return _cap()


def delta_result_size(delta: bytes | list[bytes]) -> int:
    """The target size a git delta declares (its second varint)."""
    head = delta[:32] if isinstance(delta, bytes) else b"".join(delta)[:32]
    index = 0
    sizes = []
    for _ in range(2):
        size = shift = 0
        while True:
            if index >= len(head):
                raise ApplyDeltaError("delta truncated in size header")
            byte = head[index]
            index += 1
            size |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        sizes.append(size)
    return sizes[1]


def install() -> None:
    """Wrap dulwich's zlib reader and delta applier once (idempotent)."""
    global _installed
    if _installed:
        return
    read_zlib_chunks = dulwich_pack.read_zlib_chunks
    apply_delta = dulwich_pack.apply_delta

    def capped_read_zlib_chunks(read_some: Any, unpacked: Any, *args: Any, **kwargs: Any) -> Any:
        cap = _cap()
        if cap is not None and (unpacked.decomp_len or 0) > cap:
            raise PackInputTooLarge(f"an object of {unpacked.decomp_len} bytes exceeds the"
                                    f" limit of {cap} bytes")
        return read_zlib_chunks(read_some, unpacked, *args, **kwargs)

    def capped_apply_delta(src_buf: Any, delta: Any) -> Any:
        cap = _cap()
        if cap is not None and delta_result_size(delta) > cap:
            raise ApplyDeltaError(f"a delta result of {delta_result_size(delta)} bytes"
                                  f" exceeds the limit of {cap} bytes")
        return apply_delta(src_buf, delta)

    dulwich_pack.read_zlib_chunks = capped_read_zlib_chunks
    dulwich_pack.apply_delta = capped_apply_delta
    _installed = True
