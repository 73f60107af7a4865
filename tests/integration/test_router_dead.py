"""Router conformance: dead backends in ``dead:<host>``, their expiry, and retries."""

from __future__ import annotations

import time

import redis

from .routerkit import backend_of, backends, free_port, get, make_config, running_router, set_route


def _dead(redis_url: str, instance: str, host: str) -> tuple[set[bytes], int]:
    client = redis.Redis.from_url(redis_url)
    try:
        key = f"{instance}:dead:{host}"
        return client.smembers(key), client.ttl(key)
    finally:
        client.close()


def test_refused_backend_is_marked_dead_and_expires(redis_url, instance):
    config = make_config(redis_url, instance, dead_ttl=1.0, cache_ttl=0.2)
    host = "shop.example.com"
    with backends("live") as (live,), running_router(config) as router:
        set_route(redis_url, instance, host, f"http://127.0.0.1:{free_port()}", live.url)
        for _ in range(10):
            status, _, body = get(router.port, host)
            assert status == 200
            assert backend_of(body) == "live"
        members, ttl = _dead(redis_url, instance, host)
        assert members == {b"0"}
        assert 0 < ttl <= 1
        time.sleep(1.6)
        assert _dead(redis_url, instance, host)[0] == set()
        # expired: the router tries index 0 again, fails over, and marks it again
        for _ in range(20):
            assert get(router.port, host)[0] == 200
            if _dead(redis_url, instance, host)[0]:
                break
        assert _dead(redis_url, instance, host)[0] == {b"0"}


def test_dead_marks_written_by_others_are_honoured(redis_url, instance):
    host = "marked.example.com"
    with backends("a", "b") as (a, b), running_router(make_config(redis_url, instance)) as router:
        set_route(redis_url, instance, host, a.url, b.url)
        client = redis.Redis.from_url(redis_url)
        client.sadd(f"{instance}:dead:{host}", 0)
        client.expire(f"{instance}:dead:{host}", 30)
        client.close()
        for _ in range(10):
            assert backend_of(get(router.port, host)[2]) == "b"
        assert a.hits == 0


def test_single_backend_is_never_marked_dead(redis_url, instance):
    host = "solo.example.com"
    with running_router(make_config(redis_url, instance)) as router:
        set_route(redis_url, instance, host, f"http://127.0.0.1:{free_port()}")
        assert get(router.port, host)[0] == 502
        time.sleep(0.1)
        assert _dead(redis_url, instance, host)[0] == set()


def test_5xx_marks_dead_and_retries_elsewhere(redis_url, instance):
    host = "flaky.example.com"
    with backends("bad", "good") as (bad, good), running_router(
        make_config(redis_url, instance)
    ) as router:
        bad.force(503)
        set_route(redis_url, instance, host, bad.url, good.url)
        for _ in range(40):  # the pick is random: go on until "bad" was tried once
            status, _, body = get(router.port, host)
            assert status == 200
            assert backend_of(body) == "good"
            if bad.hits:
                break
        assert bad.hits == 1
        time.sleep(0.1)
        assert _dead(redis_url, instance, host)[0] == {b"0"}
        for _ in range(5):
            assert backend_of(get(router.port, host)[2]) == "good"
        assert bad.hits == 1


def test_503_with_retry_after_is_passed_through(redis_url, instance):
    """nginx retries a 503 on another backend like any 5xx; one carrying Retry-After (a
    busy backend, not a dead one) marks nothing dead, and the last one reaches the client
    with its Retry-After."""
    host = "busy.example.com"
    with backends("a", "b") as (a, b), running_router(make_config(redis_url, instance)) as router:
        set_route(redis_url, instance, host, a.url, b.url)
        status, headers, _ = get(router.port, host, **{"X-Test-Status": "503",
                                                       "X-Test-Retry-After": "1"})
        assert status == 503
        assert headers.get("Retry-After") == "1"
        assert a.hits == b.hits == 1
        time.sleep(0.1)
        assert _dead(redis_url, instance, host)[0] == set()


def test_retries_stop_after_three(redis_url, instance):
    host = "allbad.example.com"
    names = [f"b{i}" for i in range(6)]
    with backends(*names) as started, running_router(make_config(redis_url, instance)) as router:
        for b in started:
            b.force(502)
        set_route(redis_url, instance, host, *(b.url for b in started))
        status, _, body = get(router.port, host)
        assert status == 502
        assert sum(b.hits for b in started) == 4  # the first try and three retries
        assert body.startswith(b"{")  # the last backend's own answer
        time.sleep(0.1)
        assert len(_dead(redis_url, instance, host)[0]) == 4


def test_no_retry_once_the_body_is_consumed(redis_url, instance):
    import http.client

    host = "post.example.com"
    with backends("bad", "good") as (bad, good), running_router(
        make_config(redis_url, instance)
    ) as router:
        bad.force(502)
        set_route(redis_url, instance, host, bad.url, good.url)
        for _ in range(40):  # the pick is random: go on until "bad" was tried once
            conn = http.client.HTTPConnection("127.0.0.1", router.port, timeout=5)
            conn.request("POST", "/", body=b"x" * 10, headers={"Host": host})
            status = conn.getresponse().status
            conn.close()
            if bad.hits:
                break
            assert status == 200
        assert bad.hits == 1
        assert status == 502  # the POST that reached "bad" was not replayed
