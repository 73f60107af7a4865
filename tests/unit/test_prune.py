"""A retirement finishing during the next deploy must not remove that deploy's image."""

from __future__ import annotations

from gitpaas import settings as settings_mod
from gitpaas.deploy import Deployer
from gitpaas.store import open_store


class RecordingBuilder:
    def __init__(self) -> None:
        self.removed: list[str] = []

    def remove(self, tag: str) -> None:
        self.removed.append(tag)


def test_prune_keeps_the_image_of_a_pending_release(tmp_path):
    s = settings_mod.load({"data_dir": tmp_path, "keep_releases": 1}, environ={})
    store = open_store(s.database, s.secret_key_path)
    store.create_app("shop", "admin", "main")
    for version in (1, 2):
        store.add_release("shop", f"i/shop:v{version}", "c" * 40, {}, {}, "d", "admin")
        store.activate_release("shop", version)
    store.add_release("shop", "i/shop:v3", "c" * 40, {}, {}, "being deployed", "admin")
    builder = RecordingBuilder()
    Deployer(s, store, builder, None, None).prune_images("shop")
    assert builder.removed == ["i/shop:v1"]
    store.close()
