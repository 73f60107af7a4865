"""A commit's tree streamed as a tar build context, without a checkout, path-safe.

Refused: ``.git`` in any case and its 8.3 alias ``git~1``, ``..``, absolute paths,
symlinks whose target leaves the tree (resolved through the tree's other symlinks),
submodules. Set-uid/set-gid bits are dropped.
Size and file count are capped.
"""

from __future__ import annotations

import io
import posixpath
import stat
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

from dulwich.object_store import BaseObjectStore
from dulwich.objects import Blob, Commit, ObjectID, Tree

from ..errors import UserError

SUBMODULE_MODE = 0o160000
FORBIDDEN_COMPONENTS = {".git", "git~1", "..", "."}


class UnsafeTree(UserError):
    """The pushed tree holds a path that could escape the build context."""


@dataclass(frozen=True)
class Entry:
    path: str
    mode: int
    sha: bytes


def check_path(path: str) -> str:
    """Return ``path`` if it is a safe relative path inside the tree, else raise."""
    if not path or path.startswith("/") or "\\" in path or "\x00" in path:
        raise UnsafeTree(f"unsafe path in the pushed tree: {path!r}")
    for part in path.split("/"):
        folded = part.lower().rstrip(". ")  # ".git." and ".GIT " reach .git on some systems
        if not folded or part in FORBIDDEN_COMPONENTS or folded in FORBIDDEN_COMPONENTS:
            raise UnsafeTree(f"unsafe path in the pushed tree: {path!r}")
    return path


MAX_LINK_HOPS = 40  # as Linux's MAXSYMLINKS


def check_symlink(path: str, target: str, links: dict[str, str] | None = None) -> None:
    """A symlink must point inside the tree, resolved as the kernel would: through the
    tree's other symlinks (``links``: path -> target), never ``..`` past the root.

    ``s -> .`` and ``x -> s/..`` look inside to a lexical check, but ``x`` is the
    parent of the tree: resolving each component through ``links`` catches it.
    """
    links = links if links is not None else {path: target}
    if target.startswith("/") or "\x00" in target:
        raise UnsafeTree(f"symlink {path!r} points outside the tree")
    resolved = [p for p in posixpath.dirname(path).split("/") if p]
    todo = target.split("/")
    hops = 0
    while todo:
        part = todo.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if not resolved:
                raise UnsafeTree(f"symlink {path!r} points outside the tree")
            resolved.pop()
            continue
        resolved.append(part)
        inner = links.get("/".join(resolved))
        if inner is not None:
            hops += 1
            if hops > MAX_LINK_HOPS or inner.startswith("/") or "\x00" in inner:
                raise UnsafeTree(f"symlink {path!r} points outside the tree (or loops)")
            resolved.pop()
            todo = inner.split("/") + todo


def raw_tree_names(raw: bytes) -> list[bytes]:
    """Entry names of a raw tree object, duplicates included (dulwich's ``Tree`` keeps
    one entry per name, so a crafted tree's duplicates would be silently dropped)."""
    found, pos = [], 0
    while pos < len(raw):
        space = raw.index(b" ", pos)
        nul = raw.index(b"\0", space)
        found.append(raw[space + 1:nul])
        pos = nul + 21
    return found


def check_unique_names(store: BaseObjectStore, tree_id: bytes, prefix: str) -> None:
    """Refuse a tree holding one name twice (e.g. a symlink and a directory ``link``)."""
    try:
        names = raw_tree_names(store.get_raw(ObjectID(tree_id))[1])
    except ValueError:
        raise UnsafeTree(f"a malformed tree in the push at {prefix or '/'}") from None
    if len(names) != len(set(names)):
        dup = next(n for n in names if names.count(n) > 1).decode("utf-8", "replace")
        raise UnsafeTree(f"unsafe path in the pushed tree: {prefix}{dup!r} appears twice")


def walk_tree(store: BaseObjectStore, tree_id: bytes, prefix: str = "") -> Iterator[Entry]:
    """Every blob and symlink of a tree, depth first, with paths checked."""
    tree = store[ObjectID(tree_id)]
    if not isinstance(tree, Tree):
        raise UnsafeTree("the pushed commit has no valid tree")
    check_unique_names(store, tree_id, prefix)
    for item in tree.iteritems():
        name = item.path.decode("utf-8", "surrogateescape")
        path = check_path(f"{prefix}{name}")
        if item.mode == SUBMODULE_MODE:
            raise UnsafeTree(f"submodules are not supported: {path!r}")
        if stat.S_ISDIR(item.mode):
            yield from walk_tree(store, item.sha, f"{path}/")
        else:
            yield Entry(path, item.mode, item.sha)


def tree_paths(store: BaseObjectStore, commit_id: bytes) -> list[str]:
    """The file paths of a commit (for buildpack detection)."""
    commit = store[ObjectID(commit_id)]
    assert isinstance(commit, Commit)
    return [e.path for e in walk_tree(store, commit.tree)]


def read_blob(store: BaseObjectStore, commit_id: bytes, path: str) -> bytes | None:
    """The content of ``path`` in a commit, or None when absent (not a directory)."""
    commit = store[ObjectID(commit_id)]
    assert isinstance(commit, Commit)
    tree = store[commit.tree]
    parts = path.split("/")
    try:
        for part in parts[:-1]:
            if not isinstance(tree, Tree):  # a file where the path wants a directory
                return None
            _, sha = tree[part.encode()]
            tree = store[sha]
        if not isinstance(tree, Tree):
            return None
        mode, sha = tree[parts[-1].encode()]
    except KeyError:
        return None
    if stat.S_ISDIR(mode) or mode == SUBMODULE_MODE:
        return None
    blob = store[sha]
    return blob.as_raw_string() if isinstance(blob, Blob) else None


def build_context(store: BaseObjectStore, commit_id: bytes,
                  extra_files: dict[str, bytes] | None = None, max_bytes: int = 512 << 20,
                  max_files: int = 50_000) -> IO[bytes]:
    """Write the commit's tree (plus ``extra_files``) as a tar; return it rewound."""
    commit = store[ObjectID(commit_id)]
    if not isinstance(commit, Commit):
        raise UnsafeTree("the pushed ref is not a commit")
    entries = []
    for entry in walk_tree(store, commit.tree):
        entries.append(entry)
        if len(entries) > max_files:
            raise UnsafeTree(f"the pushed tree has more than {max_files} files")
    links = {e.path: store[ObjectID(e.sha)].as_raw_string().decode("utf-8", "surrogateescape")
             for e in entries if stat.S_ISLNK(e.mode)}
    for path, target in links.items():
        check_symlink(path, target, links)
    out = tempfile.TemporaryFile()  # noqa: SIM115 - returned to the caller
    total = 0
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in entries:
            data = store[ObjectID(entry.sha)].as_raw_string()
            total += len(data)
            if total > max_bytes:
                raise UnsafeTree(f"the pushed tree is larger than {max_bytes >> 20} MiB")
            info = tarfile.TarInfo(entry.path)
            info.mtime = commit.commit_time
            if stat.S_ISLNK(entry.mode):
                info.type, info.linkname = tarfile.SYMTYPE, links[entry.path]
                tar.addfile(info)
                continue
            info.size = len(data)
            info.mode = 0o755 if entry.mode & 0o111 else 0o644
            tar.addfile(info, io.BytesIO(data))
        for path, data in (extra_files or {}).items():
            info = tarfile.TarInfo(check_path(path))
            info.size, info.mode, info.mtime = len(data), 0o644, commit.commit_time
            tar.addfile(info, io.BytesIO(data))
    out.seek(0)
    return out
