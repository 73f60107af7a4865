import tarfile

import pytest
from dulwich.objects import Blob, Commit, Tree
from dulwich.repo import MemoryRepo

from gitpaas.build.context import UnsafeTree, build_context, read_blob, tree_paths


def commit_tree(repo: MemoryRepo, entries: dict[bytes, tuple[int, bytes]]) -> bytes:
    """Build nested trees from {b'a/b': (mode, content)} and commit them."""
    store = repo.object_store

    def make(level: dict) -> bytes:
        tree = Tree()
        for name, value in level.items():
            if isinstance(value, dict):
                tree.add(name, 0o040000, make(value))
            else:
                mode, content = value
                if mode == 0o160000:
                    tree.add(name, mode, content)
                    continue
                blob = Blob.from_string(content)
                store.add_object(blob)
                tree.add(name, mode, blob.id)
        store.add_object(tree)
        return tree.id

    nested: dict = {}
    for path, value in entries.items():
        parts = path.split(b"/")
        node = nested
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    commit = Commit()
    commit.tree = make(nested)
    commit.author = commit.committer = b"T <t@example.com>"
    commit.author_time = commit.commit_time = 1700000000
    commit.author_timezone = commit.commit_timezone = 0
    commit.message = b"test"
    store.add_object(commit)
    return commit.id


def members(fileobj) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=fileobj) as tar:
        return {m.name: m for m in tar.getmembers()}


def test_good_tree_becomes_a_tar_with_modes_and_extra_files():
    repo = MemoryRepo()
    sha = commit_tree(repo, {b"index.html": (0o100644, b"hi"), b"bin/run": (0o100755, b"#!"),
                             b"link": (0o120000, b"bin/run"),
                             b"d/up": (0o120000, b"../index.html")})
    out = members(build_context(repo.object_store, sha, {"Dockerfile.x": b"FROM x\n"}))
    assert set(out) == {"index.html", "bin/run", "link", "d/up", "Dockerfile.x"}
    assert out["bin/run"].mode == 0o755 and out["index.html"].mode == 0o644
    assert out["link"].issym() and out["link"].linkname == "bin/run"
    assert sorted(tree_paths(repo.object_store, sha)) == ["bin/run", "d/up", "index.html", "link"]
    assert read_blob(repo.object_store, sha, "index.html") == b"hi"
    assert read_blob(repo.object_store, sha, "missing") is None
    assert read_blob(repo.object_store, sha, "bin") is None


def test_setuid_bits_are_dropped():
    repo = MemoryRepo()
    sha = commit_tree(repo, {b"suid": (0o104755, b"x")})
    assert members(build_context(repo.object_store, sha))["suid"].mode == 0o755


@pytest.mark.parametrize("entries", [
    {b".git/config": (0o100644, b"x")},
    {b".GIT/hooks": (0o100644, b"x")},
    {b"git~1/x": (0o100644, b"x")},
    {b"a/.git/x": (0o100644, b"x")},
    {b"..": (0o100644, b"x")},
    {b"...": (0o100644, b"x")},
    {b".git.": (0o100644, b"x")},
    {b"esc": (0o120000, b"../../etc/passwd")},
    {b"abs": (0o120000, b"/etc/passwd")},
    {b"d/esc": (0o120000, b"../..")},
    {b"sub": (0o160000, b"a" * 40)},
    # Issue 11, finding 9: lexically inside, really the tree's parent (through s -> .).
    {b"s": (0o120000, b"."), b"x": (0o120000, b"s/..")},
    {b"d/s": (0o120000, b".."), b"d/x": (0o120000, b"s/..")},
    {b"a": (0o120000, b"b/c"), b"b/c": (0o120000, b"../.."), b"x": (0o120000, b"a/f")},
    {b"d/up": (0o120000, b"../abs"), b"abs": (0o120000, b"/etc")},
    {b"l1": (0o120000, b"l2"), b"l2": (0o120000, b"l1")},  # a loop
])
def test_unsafe_trees_are_refused(entries):
    repo = MemoryRepo()
    sha = commit_tree(repo, entries)
    with pytest.raises(UnsafeTree):
        build_context(repo.object_store, sha)


def test_caps_on_size_and_count():
    repo = MemoryRepo()
    sha = commit_tree(repo, {f"f{i}".encode(): (0o100644, b"x" * 100) for i in range(5)})
    with pytest.raises(UnsafeTree, match="more than 3 files"):
        build_context(repo.object_store, sha, max_files=3)
    with pytest.raises(UnsafeTree, match="larger than"):
        build_context(repo.object_store, sha, max_bytes=300)
    assert len(members(build_context(repo.object_store, sha))) == 5


def test_a_name_twice_in_one_tree_is_refused():
    """A symlink ``link`` and a directory ``link`` in one crafted tree (dulwich's Tree
    object would keep only one of them)."""
    from dulwich.objects import Tree

    repo = MemoryRepo()
    store = repo.object_store
    blob = Blob.from_string(b"/etc")
    store.add_object(blob)
    inner = Tree()
    inner.add(b"passwd", 0o100644, blob.id)
    store.add_object(inner)
    raw = (b"120000 link\0" + bytes.fromhex(blob.id.decode())
           + b"40000 link\0" + bytes.fromhex(inner.id.decode()))
    tree = Tree.from_raw_string(Tree.type_num, raw)
    store.add_object(tree)
    commit = Commit()
    commit.tree = tree.id
    commit.author = commit.committer = b"T <t@example.com>"
    commit.author_time = commit.commit_time = 1700000000
    commit.author_timezone = commit.commit_timezone = 0
    commit.message = b"dup"
    store.add_object(commit)
    if len(store.get_raw(tree.id)[1]) != len(raw):
        pytest.skip("this object store re-serialises trees; covered end to end")
    with pytest.raises(UnsafeTree, match="appears twice"):
        build_context(store, commit.id)


def test_symlinks_that_resolve_inside_the_tree_are_kept():
    repo = MemoryRepo()
    sha = commit_tree(repo, {b"s": (0o120000, b"."), b"x": (0o120000, b"s/s/d/f"),
                             b"d/f": (0o100644, b"x"), b"d/up": (0o120000, b"../d/../s/d"),
                             b"d/dangling": (0o120000, b"nowhere/..")})
    found = members(build_context(repo.object_store, sha))
    assert found["x"].linkname == "s/s/d/f" and found["d/up"].issym()
