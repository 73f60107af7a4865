"""The per-IP limits as nginx.conf renders them (a limit of 0 is none: nginx refuses 0)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gitpaas.edge.config import EdgeConfig, render_nginx
from gitpaas.errors import InvalidInput


def conf(**kw: object) -> str:
    return render_nginx(EdgeConfig(Path("/tmp/gp-edge-unit"), ("127.0.0.1", 8080),
                                   "redis://127.0.0.1:6379/0", "x:", **kw))  # type: ignore[arg-type]


def test_limits_are_rendered():
    text = conf(limit_conn=7, limit_rate=9, limit_burst=11)
    assert "limit_conn gp_conn 7;" in text
    assert "rate=9r/s;" in text and "limit_req zone=gp_req burst=11 nodelay;" in text


def test_zero_turns_a_limit_off():
    assert "burst" not in conf(limit_burst=0)
    text = conf(limit_conn=0, limit_rate=0)
    assert "limit_conn" not in text and "limit_req" not in text


@pytest.mark.parametrize("name", ["limit_conn", "limit_rate", "limit_burst"])
def test_a_negative_limit_is_refused(name):
    with pytest.raises(InvalidInput, match=f"edge_{name}"):
        conf(**{name: -1})
