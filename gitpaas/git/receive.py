"""git-receive-pack and git-upload-pack over an SSH channel, with the deploy inside.

The deploy runs in ``_on_update`` (after the objects are stored, before the ref moves);
what it returns becomes ``ng <ref> <reason>``. See docs/architecture.md for the traps.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from dulwich.errors import GitProtocolError, HangupException
from dulwich.objects import ObjectID
from dulwich.protocol import CAPABILITY_ATOMIC, SIDE_BAND_CHANNEL_PROGRESS, ReceivableProtocol
from dulwich.refs import Ref, check_ref_format
from dulwich.repo import Repo
from dulwich.server import Backend, ReceivePackHandler, UploadPackHandler

from .. import faults
from ..errors import InvalidInput
from . import limits
from .indexpack import PackRefused, store_pack
from .limits import object_size_cap
from .maintenance import clean_partial

log = logging.getLogger(__name__)
ZERO = b"0" * 40
ALLOWED_REF_PREFIXES = (b"refs/heads/", b"refs/tags/")


REF_REFUSED = b"refused: only refs/heads/* and refs/tags/* may be pushed"


def ref_allowed(ref: bytes) -> bool:
    """Only well-formed branch and tag names: no ``..``, no control characters."""
    return (ref.startswith(ALLOWED_REF_PREFIXES) and check_ref_format(Ref(ref))
            and b".." not in ref and len(ref) <= 1024)


class Progress:
    """Writes ``remote:`` lines on the side-band; stops quietly once the client is gone."""

    def __init__(self, write: Callable[[bytes], Any] | None) -> None:
        self._write = write
        self._lock = threading.Lock()
        self.lines: list[str] = []

    def __call__(self, line: str) -> None:
        self.lines.append(line)
        if self._write is None:
            return
        with self._lock:
            try:
                self._write(line.rstrip("\n").encode("utf-8", "replace") + b"\n")
            except Exception:  # noqa: BLE001 - the client went away: keep deploying
                log.info("client disconnected; progress no longer sent")
                self._write = None


class SingleRepoBackend(Backend):
    """Serves exactly one already-opened repository, whatever path is asked for."""

    def __init__(self, repo: Repo) -> None:
        self.repo = repo

    def open_repository(self, path: str) -> Repo:
        return self.repo


# on_update(ref, old, new, progress) -> None on success, or the reason the ref is refused.
UpdateHook = Callable[[bytes, bytes, bytes, Progress], str | None]


class DeployingReceivePackHandler(ReceivePackHandler):
    """Receive-pack whose ``_on_update`` runs the deploy and streams its progress."""

    def capabilities(self) -> list[bytes]:
        # No ``atomic``: dulwich runs _on_update while still validating the other refs,
        # so a deploy could go live while the push as a whole is refused.
        return [c for c in super().capabilities() if c != CAPABILITY_ATOMIC]

    def __init__(self, repo: Repo, proto: ReceivableProtocol, on_update: UpdateHook) -> None:
        super().__init__(SingleRepoBackend(repo), ["."], proto)
        # dulwich types these as its BackendRepo and Protocol: the pack goes to this repo's
        # path, read from this protocol's recv.
        self._repo = repo
        self._receivable = proto
        self._hook = on_update
        self._name = os.path.basename(repo.path.rstrip("/"))
        self._started = time.monotonic()
        self._received = False

    def progress(self) -> Progress:
        writer = None
        if self.has_capability(b"side-band-64k"):
            def writer(data: bytes) -> None:
                self.proto.write_sideband(SIDE_BAND_CHANNEL_PROGRESS, data)
        return Progress(writer)

    def _apply_pack(self, refs: list[tuple[ObjectID, ObjectID, Ref]],
                    ) -> Iterator[tuple[bytes, bytes]]:
        """Refuse the whole push before reading the pack when a ref name is not allowed:
        nothing is written to the repository (not even the objects)."""
        bad = [ref for _, _, ref in refs if not ref_allowed(ref)]
        if bad:
            log.warning("push refused before the pack was read: ref names %r", bad[:5])
            yield (b"unpack", b"refused: bad ref name")
            for _, _, ref in refs:
                yield (ref, REF_REFUSED)
            return
        faults.point("receive")
        if any(new != ZERO for _, new, _ in refs):
            try:
                store_pack(self._repo.path, self._receivable.recv,
                           max_input_bytes=self._receive_max_input_size(),
                           max_object_bytes=limits.current_cap())
            except (PackRefused, OSError) as exc:  # as dulwich: the reason, in one line
                log.info("pack refused: %s", exc)
                yield (b"unpack", " ".join(str(exc).split()).encode("utf-8", "replace"))
                return
        yield (b"unpack", b"ok")
        for old, new, ref in refs:
            yield (ref, self._update_ref(ref, old, new))

    def _update_ref(self, ref: Ref, old: ObjectID, new: ObjectID) -> bytes:
        """Run the hook (the deploy), then move or delete the ref; the ref's status."""
        reason = self._on_update(ref, old, new)
        if reason:
            return reason
        try:
            if new == ZERO:
                self.repo.refs.remove_if_equals(ref, old)
            else:
                self.repo.refs.set_if_equals(ref, old, new)
        except (OSError, KeyError):
            log.exception("cannot %s %r", "delete" if new == ZERO else "write", ref)
            return b"failed to delete" if new == ZERO else b"failed to write"
        return b"ok"

    def _exists(self, sha: bytes) -> bool:
        """dulwich does no connectivity check: a ref may only name a stored object."""
        try:
            return ObjectID(sha) in self.repo.object_store
        except (ValueError, KeyError):
            return False

    def _on_update(self, ref_name: bytes, old_sha: bytes, new_sha: bytes) -> bytes | None:
        if not self._received:  # refs advertised, commands and pack read, pack stored
            self._received = True
            log.info("receive %s: %.3f s", self._name,
                     time.monotonic() - self._started)
        try:
            if not ref_allowed(ref_name):
                return REF_REFUSED
            if new_sha != ZERO and not self._exists(new_sha):
                return b"refused: the pushed object " + new_sha[:12] + b" is missing"
            progress = self.progress()
            # The caller holds the app's lock for the whole session; dulwich ignores a
            # failed compare-and-swap, so check here that the ref still holds ``old``.
            try:
                current: bytes = self.repo.refs[Ref(ref_name)]
            except KeyError:
                current = ZERO
            if current != old_sha:
                return b"stale info: the ref moved during the push; fetch and push again"
            reason = self._hook(ref_name, old_sha, new_sha, progress)
        except Exception as exc:  # noqa: BLE001 - any escape would lose report-status
            log.exception("push of %r failed", ref_name)
            reason = getattr(exc, "message", None) or f"internal error ({type(exc).__name__})"
        if reason:
            return " ".join(str(reason).split()).encode("utf-8", "replace")[:900]
        return None


def serve_receive_pack(repo: Repo, recv: Callable[[int], bytes], send: Callable[[bytes], Any],
                       on_update: UpdateHook, max_object_bytes: int | None = None) -> None:
    """Run one receive-pack session over ``recv``/``send`` (hold the app's lock around it:
    refs are advertised only once earlier pushes have moved theirs). Objects larger than
    ``max_object_bytes`` are refused before they are inflated."""
    proto = ReceivableProtocol(recv, send)
    try:
        with object_size_cap(max_object_bytes), malformed_input():
            DeployingReceivePackHandler(repo, proto, on_update).handle()
    finally:
        # Whatever ended the session (a refused or truncated pack, a full disk, a client
        # gone): its partial pack goes now, not when the disk is full.
        clean_partial(repo.path)


def serve_upload_pack(repo: Repo, recv: Callable[[int], bytes],
                      send: Callable[[bytes], Any]) -> None:
    """Run one upload-pack session (git fetch / clone) over ``recv``/``send``."""
    proto = ReceivableProtocol(recv, send)
    with malformed_input():
        UploadPackHandler(SingleRepoBackend(repo), ["."], proto).handle()


@contextmanager
def malformed_input() -> Iterator[None]:
    """A client's malformed pkt-lines become ``InvalidInput`` (exit 1, one line), not an
    internal error; a hang-up stays a ``HangupException`` (a normal end)."""
    try:
        yield
    except HangupException:
        raise
    except (GitProtocolError, ValueError, IndexError, TypeError, EOFError,
            struct.error) as exc:  # what dulwich raises on truncated or garbled input
        reason = " ".join(str(exc).split())[:200]
        raise InvalidInput(f"malformed git protocol data: {reason}") from exc
