"""Log lines: timestamps, merging, the bounded archive of removed containers."""

from __future__ import annotations

from types import SimpleNamespace

from gitpaas.applogs import LogArchive, matches, merge, normalize_timestamp, parse_docker


def test_normalize_timestamp_sorts_as_text():
    a = normalize_timestamp("2024-01-01T00:00:00.5Z")
    b = normalize_timestamp("2024-01-01T00:00:00.123456789Z")
    assert a == "2024-01-01T00:00:00.500000000Z" and b < a
    assert normalize_timestamp("garbage") is None


def test_merge_interleaves_by_time_and_limits():
    web = parse_docker("2024-01-01T00:00:01Z one\n2024-01-01T00:00:03Z three\r\n", "web.1")
    worker = parse_docker("2024-01-01T00:00:02.5Z two\nnot a line\n", "worker.1")
    lines = merge([web, worker])
    assert [li.render() for li in lines] == ["web.1 | one", "worker.1 | two", "web.1 | three"]
    assert [li.text for li in merge([web, worker], 2)] == ["two", "three"]
    assert matches("web.1", "web") and matches("web.1", "web.1") and not matches("web.1", "w")


def test_archive_keeps_and_bounds(tmp_path):
    archive = LogArchive(tmp_path, max_bytes=2000)
    info = SimpleNamespace(app="shop", process="web", replica=2)
    archive.keep(info, "2024-01-01T00:00:01Z hello world\n")
    assert [li.render() for li in archive.read("shop")] == ["web.2 | hello world"]
    for i in range(200):
        archive.keep(info, f"2024-01-01T00:01:{i % 60:02d}Z line {i}\n")
    assert archive.path("shop").stat().st_size <= 2000
    kept = archive.read("shop")
    assert kept[-1].text == "line 199" and all(li.source == "web.2" for li in kept)
    archive.remove("shop")
    assert archive.read("shop") == []
