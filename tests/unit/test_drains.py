"""Drain URLs, the destination check, syslog framing and a queue that never blocks."""

from __future__ import annotations

import re

import pytest

from gitpaas import drains
from gitpaas.errors import Forbidden, InvalidInput


@pytest.mark.parametrize("url", [
    "syslog+tcp://127.0.0.1:6379", "syslog+tls://localhost:6514",
    "https://10.1.2.3/logs", "syslog+tcp://0x7f.1:6379", "https://[::1]/x",
    "syslog+tcp://169.254.169.254:80", "https://2130706433/",
])
def test_tenants_cannot_drain_to_local_or_private_addresses(url):
    with pytest.raises((Forbidden, InvalidInput)):
        drains.parse_url(url, admin=False)


def test_admins_may_drain_to_loopback():
    drain = drains.parse_url("syslog+tcp://127.0.0.1:5514", admin=True)
    assert (drain.scheme, drain.host, drain.port, drain.private_ok) == (
        "syslog+tcp", "127.0.0.1", 5514, True)


@pytest.mark.parametrize("url, reason", [
    ("ftp://example.com/", "starts with"),
    ("syslog+tcp://example.com", "needs a port"),
    ("syslog+tcp://u:p@example.com:514", "no user or password"),
    ("syslog+tcp://example.com:514/path", "syslog\\+tcp://HOST:PORT"),
    ("https://exa mple.com/", "one word"),
    ("https://bad_host!/", "invalid"),
])
def test_bad_urls_get_one_line_reasons(url, reason):
    with pytest.raises(InvalidInput, match=reason):
        drains.parse_url(url, admin=True)


def test_plain_http_is_for_admins():
    with pytest.raises(Forbidden):
        drains.parse_url("http://example.com/", admin=False)


def test_listings_hide_tokens():
    assert drains.public_url("https://user:tok@logs.example.com:8443/in?key=secret") == \
        "https://logs.example.com:8443/in"


def test_syslog_frames_are_rfc5424_and_octet_counted():
    frame = drains.syslog_frame("shop", "web.1", "v3", "hello é", 0.5)
    length, _, message = frame.partition(b" ")
    assert int(length) == len(message)
    assert re.fullmatch(rb"<14>1 1970-01-01T00:00:00\.500000Z gitpaas shop web\.1 v3 - "
                        rb"hello \xc3\xa9", message)


def test_a_full_queue_drops_its_oldest_lines_without_blocking(monkeypatch):
    monkeypatch.setattr(drains, "QUEUE_LINES", 3)
    sender = drains.Sender(drains.Drain("syslog+tcp://127.0.0.1:9", "syslog+tcp",
                                        "127.0.0.1", 9, True))
    sender.stop()
    sender.queue = type(sender.queue)(maxlen=3)
    for i in range(5):
        sender.put(drains.Line("a", "web.1", "v1", str(i), 0.0))
    assert [li.text for li in sender.queue] == ["2", "3", "4"] and sender.dropped == 2


def test_docker_chunks_become_lines():
    assert list(drains.lines_of(iter([b"a\nb", b"c\r\n", b"d"]))) == ["a", "bc", "d"]
