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


def test_the_limit_key_is_the_client_address():
    """geo values are plain strings: the per-IP key comes from a map, never from geo (a
    ``$binary_remote_addr`` value in geo is that text, one key for every client)."""
    text = conf(limit_exempt="10.0.0.0/8")
    geo = text.split("geo $gp_limit_exempt {", 1)[1].split("}", 1)[0]
    assert "$" not in geo and "10.0.0.0/8 1;" in geo
    assert "0 $binary_remote_addr;" in text.split("map $gp_limit_exempt $gp_limit_key {")[1]
