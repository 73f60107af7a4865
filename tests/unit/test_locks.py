"""The per-app lock says when it was last let go (the reconciler lists once a pass)."""

from __future__ import annotations

import time

from gitpaas.locks import app_lock


def test_the_lock_yields_when_it_was_last_released(tmp_path):
    with app_lock(tmp_path, "shop", "first", 0.0) as released:
        assert released == 0.0  # never held before
        time.sleep(0.05)
    let_go = time.time()
    time.sleep(0.05)
    with app_lock(tmp_path, "shop", "second", 0.0) as released:
        assert let_go - 0.05 <= released <= let_go + 0.01
    with app_lock(tmp_path, "blog", "other app", 0.0) as released:
        assert released == 0.0
