"""Edge conformance: route invalidation over pub/sub, TTL fallback, Redis outages."""

from __future__ import annotations

import http.client
import re
import shutil
import subprocess
import time
import urllib.request

import pytest
import redis

from ..conftest import require
from .routerkit import (
    backend_of,
    backends,
    free_port,
    get,
    make_config,
    running_router,
    set_route,
    wait_subscribed,
)

HOST = "swap.example.com"


def test_swap_is_seen_within_100ms(redis_url, instance):
    with backends("old", "new") as (old, new), running_router(
        make_config(redis_url, instance, cache_ttl=60.0)
    ) as router:
        set_route(redis_url, instance, HOST, old.url)
        assert backend_of(get(router.port, HOST)[2]) == "old"
        set_route(redis_url, instance, HOST, new.url)  # publishes the host name
        swapped_at = time.monotonic()
        while backend_of(get(router.port, HOST)[2]) != "new":
            assert time.monotonic() - swapped_at < 0.1
        assert time.monotonic() - swapped_at < 0.1


@pytest.mark.parametrize("host", [
    pytest.param("a" * 50 + ".example.com", id="longer-than-a-slot"),
    pytest.param("s.example.com", id="short"),
])
def test_swap_is_seen_for_a_host_in_a_slot_or_not(redis_url, instance, host):
    """A known host is found in the worker's host slots (names up to 54 bytes) or, longer,
    in its table: a swap empties both."""
    with backends("old", "new") as (old, new), running_router(
        make_config(redis_url, instance, cache_ttl=60.0)
    ) as router:
        set_route(redis_url, instance, host, old.url)
        for _ in range(3):
            assert backend_of(get(router.port, host)[2]) == "old"
        set_route(redis_url, instance, host, new.url)
        time.sleep(0.1)
        for _ in range(3):
            assert backend_of(get(router.port, host)[2]) == "new"


def each_host_keeps_its_own_route(redis_url: str, instance: str, hosts: list[str],
                                  rounds: int) -> None:
    """Give each of ``hosts`` a frontend, alternately on two backends, and check ``rounds``
    times that each request reaches its own host's backend (and that a host with no
    frontend still gets a 404)."""
    with backends("even", "odd") as (even, odd), running_router(
        make_config(redis_url, instance, cache_ttl=60.0)
    ) as router:
        client = redis.Redis.from_url(redis_url)
        for i, host in enumerate(hosts):
            client.rpush(f"{instance}:frontend:{host}", f"app{i}", (odd if i % 2 else even).url)
        client.close()
        for _ in range(rounds):
            for i, host in enumerate(hosts):
                assert backend_of(get(router.port, host)[2]) == ("odd" if i % 2 else "even")
        assert get(router.port, f"{hosts[0]}.unknown.example.com")[0] == 404


def test_hosts_differing_in_one_digit_keep_their_own_routes(redis_url, instance):
    """400 hosts named alike (as the bench's app<i>), half on each backend: each request,
    served from the host slots after the first, reaches its own host's backend."""
    each_host_keeps_its_own_route(redis_url, instance,
                                  [f"app{i}.slots.example.com" for i in range(400)], rounds=2)


def test_host_names_made_to_collide_in_the_slots_keep_their_own_routes(redis_url, instance):
    """An anonymous client picks Host names: "ao" and "c1" hash alike in the host slots,
    so every name made of such pairs lands on one slot and its run. 64 such names, more
    than a lookup walks (PROBES), each with a frontend: each request reaches its own
    host's backend, whether its name found a slot or took the slower path."""
    names = ["".join("c1" if bits >> k & 1 else "ao" for k in range(6)) for bits in range(64)]
    each_host_keeps_its_own_route(redis_url, instance,
                                  [f"{name}.collide.example.com" for name in names], rounds=3)


def lua_memory(admin_port: int) -> int:
    """The edge worker's Lua heap in bytes, from its /metrics page."""
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    match = re.search(r"^gitpaas_edge_lua_memory_bytes (\d+)$", text, re.M)
    assert match, text
    return int(match.group(1))


def test_a_known_host_costs_its_worker_almost_no_garbage(redis_url, instance):
    """With 10,000 hosts the worker's garbage collector walked a heap of ~30 MB of cold
    objects, paid by every request in proportion to what each allocated (~470 bytes: its
    state table, values boxed at the hash and compare loops): ~1 us a request. A request
    to a known host now allocates ~120 bytes (what ngx_lua itself allocates), none of it
    in the edge's Lua: 3,000 requests on one connection grow the heap by far less than
    the ~1.4 MB they did (no collection cycle ends in between at this heap's size)."""
    config = make_config(redis_url, instance, cache_ttl=60.0, admin_listen=("127.0.0.1", 0))
    with backends("a") as (a,), running_router(config) as router:
        set_route(redis_url, instance, HOST, a.url)
        conn = http.client.HTTPConnection("127.0.0.1", router.port, timeout=5)
        try:
            def requests(n: int) -> None:
                for _ in range(n):
                    conn.request("GET", "/", headers={"Host": HOST})
                    resp = conn.getresponse()
                    resp.read()
                    assert resp.status == 200

            requests(200)
            before = lua_memory(router.admin_port)
            requests(3000)
            grown = lua_memory(router.admin_port) - before
        finally:
            conn.close()
    assert grown < 3000 * 250, f"{grown / 3000:.0f} bytes a request"


def test_request_state_reused_after_retries_leaks_nothing(redis_url, instance):
    """The request's state (ngx.ctx) is reused from a pool once its request is logged: a
    request retried past a refused backend (its tried set, its dead mark), then one to a
    host with a lone backend, alternately on one connection, each reach their own
    backend."""
    with backends("multi", "lone") as (multi, lone), running_router(
        make_config(redis_url, instance, cache_ttl=60.0)
    ) as router:
        set_route(redis_url, instance, "multi.example.com",
                  f"http://127.0.0.1:{free_port()}", multi.url)
        set_route(redis_url, instance, "lone.example.com", lone.url)
        conn = http.client.HTTPConnection("127.0.0.1", router.port, timeout=5)
        try:
            for i in range(40):
                host = "multi.example.com" if i % 2 else "lone.example.com"
                conn.request("GET", "/", headers={"Host": host})
                resp = conn.getresponse()
                assert resp.status == 200
                assert backend_of(resp.read()) == host.split(".")[0]
        finally:
            conn.close()


def test_wildcard_change_invalidates_hosts_it_covers(redis_url, instance):
    with backends("old", "new") as (old, new), running_router(
        make_config(redis_url, instance, cache_ttl=60.0)
    ) as router:
        set_route(redis_url, instance, "*.wild.example.com", old.url)
        assert backend_of(get(router.port, "a.wild.example.com")[2]) == "old"
        set_route(redis_url, instance, "*.wild.example.com", new.url)
        time.sleep(0.1)
        assert backend_of(get(router.port, "a.wild.example.com")[2]) == "new"


def test_unpublished_change_is_seen_after_the_ttl(redis_url, instance):
    with backends("old", "new") as (old, new), running_router(
        make_config(redis_url, instance, cache_ttl=0.3)
    ) as router:
        set_route(redis_url, instance, HOST, old.url)
        assert backend_of(get(router.port, HOST)[2]) == "old"
        client = redis.Redis.from_url(redis_url)
        key = f"{instance}:frontend:{HOST}"
        client.delete(key)
        client.rpush(key, "app", new.url)
        client.close()
        time.sleep(0.5)
        get(router.port, HOST)  # stale: served, and a refresh starts
        time.sleep(0.1)
        assert backend_of(get(router.port, HOST)[2]) == "new"


@pytest.fixture
def throwaway_redis(request):
    """A private redis-server on a free port: (url, start, stop). Extra redis-server
    arguments by indirect parametrization."""
    binary = shutil.which("redis-server")
    require(binary is not None, "redis-server")
    port = free_port()
    procs: list[subprocess.Popen] = []
    extra = list(getattr(request, "param", []))

    def start() -> None:
        proc = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        procs.append(proc)
        client = redis.Redis(port=port)
        deadline = time.monotonic() + 5
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "throwaway redis did not start"
                time.sleep(0.02)
        client.close()

    def stop() -> None:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(5)

    start()
    yield f"redis://127.0.0.1:{port}/0", start, stop
    stop()


def test_redis_outage_and_return(throwaway_redis):
    url, start, stop = throwaway_redis
    instance = "outage"
    with backends("a", "b") as (a, b), running_router(
        make_config(url, instance, cache_ttl=0.2)
    ) as router:
        set_route(url, instance, "known.example.com", a.url)
        assert get(router.port, "known.example.com")[0] == 200
        stop()
        time.sleep(0.3)  # past the TTL: the entry is stale, refreshes fail
        for _ in range(5):
            status, _, body = get(router.port, "known.example.com")
            assert status == 200 and backend_of(body) == "a"
        began = time.monotonic()
        assert get(router.port, "unknown.example.com")[0] == 503
        assert time.monotonic() - began < 1.0
        start()  # empty again (--save ''): write the routes anew
        set_route(url, instance, "known.example.com", b.url)
        set_route(url, instance, "new.example.com", b.url)
        deadline = time.monotonic() + 10
        while get(router.port, "new.example.com")[0] != 200:
            assert time.monotonic() < deadline, "edge did not reconnect to Redis"
            time.sleep(0.1)
        while backend_of(get(router.port, "known.example.com")[2]) != "b":
            assert time.monotonic() < deadline, "stale route not refreshed"
            time.sleep(0.1)
        wait_subscribed(url, f"{instance}:")  # pub/sub is back too


def test_unpublished_new_frontend_is_served_within_seconds(redis_url, instance):
    """Any Hipache tool may write a frontend without publishing: an unknown host is
    remembered as such for about a second only (no long negative cache)."""
    with backends("a") as (a,), running_router(make_config(redis_url, instance)) as router:
        host = "quiet.example.com"
        assert get(router.port, host)[0] == 404
        client = redis.Redis.from_url(redis_url)
        client.rpush(f"{instance}:frontend:{host}", "other-tool", a.url)
        client.close()
        written = time.monotonic()
        while get(router.port, host)[0] != 200:
            assert time.monotonic() - written < 3
            time.sleep(0.05)


def test_many_unknown_hosts_do_not_hurt_known_ones(redis_url, instance):
    with backends("a") as (a,), running_router(make_config(redis_url, instance)) as router:
        set_route(redis_url, instance, HOST, a.url)
        for i in range(300):  # e.g. a scan with random Host headers
            assert get(router.port, f"random{i}.example.com")[0] == 404
        assert backend_of(get(router.port, HOST)[2]) == "a"


def wait_patterns(url: str) -> None:
    """Until an edge listens to keyspace notifications (a private Redis: PUBSUB NUMPAT
    counts only its patterns)."""
    client = redis.Redis.from_url(url)
    try:
        deadline = time.monotonic() + 5
        while client.execute_command("PUBSUB", "NUMPAT") < 2:
            assert time.monotonic() < deadline, "the edge did not subscribe to keyspace events"
            time.sleep(0.01)
    finally:
        client.close()


def serves(port: int, host: str, name: str, within: float = 2.0) -> None:
    """Until 10 requests in a row for ``host`` reach backend ``name``."""
    deadline, run = time.monotonic() + within, 0
    while run < 10:
        assert time.monotonic() < deadline, f"{host} not served by {name} within {within} s"
        run = run + 1 if backend_of(get(port, host)[2]) == name else 0


def test_unpublished_writes_to_a_cached_host_are_seen_at_once(throwaway_redis):
    """Keyspace notifications: another Hipache tool changes a cached frontend, or marks
    one of its backends dead, without publishing; the edge sees it within a second, not
    at the cache's expiry (60 s here). After a Redis restart, which forgets
    notify-keyspace-events, the edge sets it again."""
    url, start, stop = throwaway_redis
    instance = "keyspace"
    key, dead = f"{instance}:frontend:{HOST}", f"{instance}:dead:{HOST}"
    with backends("a", "b", "c") as (a, b, c), running_router(
        make_config(url, instance, cache_ttl=60.0)
    ) as router:
        wait_patterns(url)
        client = redis.Redis.from_url(url)
        flags = client.config_get("notify-keyspace-events")["notify-keyspace-events"]
        assert set("Kgls") <= set(flags), flags
        client.rpush(key, "other-tool", a.url)
        serves(router.port, HOST, "a")
        client.lset(key, 1, b.url)  # no publish
        serves(router.port, HOST, "b")
        client.rpush(key, c.url)
        client.sadd(dead, 0)  # another edge found b dead
        client.expire(dead, 30)
        serves(router.port, HOST, "c")
        client.delete(dead)
        client.close()

        stop()
        start()
        wait_subscribed(url, f"{instance}:", timeout=10)
        wait_patterns(url)
        client = redis.Redis.from_url(url)
        flags = client.config_get("notify-keyspace-events")["notify-keyspace-events"]
        assert set("Kgls") <= set(flags), flags
        client.rpush(key, "other-tool", a.url)  # an empty Redis again
        serves(router.port, HOST, "a")
        client.close()


@pytest.mark.parametrize("throwaway_redis", [["--rename-command", "CONFIG", ""]],
                         indirect=True)
def test_without_config_the_edge_serves_and_says_why(throwaway_redis):
    """A Redis that refuses CONFIG (renamed away, or an ACL): no keyspace notifications;
    the edge says why in its error log, and published changes still reach it."""
    url, _, _ = throwaway_redis
    instance = "noconfig"
    with backends("a", "b") as (a, b), running_router(
        make_config(url, instance, cache_ttl=60.0)
    ) as router:
        set_route(url, instance, HOST, a.url)
        serves(router.port, HOST, "a")
        set_route(url, instance, HOST, b.url)
        serves(router.port, HOST, "b", within=1.0)
        log = router.config.error_log_path.read_text()
        assert "no keyspace notifications" in log
        assert "unknown command" in log.lower()
