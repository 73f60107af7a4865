"""The deployer's replica start (in parallel, all-or-nothing), its timing line, its hooks."""

from __future__ import annotations

import functools
import threading
import time

import pytest

from gitpaas.deploy import Deployer, Timings
from gitpaas.errors import DeployError
from gitpaas.hooks import SHIPPED, hook_dirs
from gitpaas.runtime import ContainerInfo
from gitpaas.settings import Settings
from gitpaas.store.models import Release


class FakeStore:
    def formation(self, app: str) -> dict[str, int]:
        return {"web": 3, "worker": 1}

    def resources(self, app: str) -> dict:
        return {}

    def mounts(self, app: str) -> list:
        return []


class FakeRuntime:
    def __init__(self, fail_replica: int | None = None) -> None:
        self.fail_replica = fail_replica
        self.removed: list[ContainerInfo] = []
        self.active = self.peak = 0
        self.lock = threading.Lock()

    def start(self, app, release, image, process, replica, env, command=None, web=False,
              mem_limit=None, nano_cpus=None, mounts=None) -> ContainerInfo:
        with self.lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
        time.sleep(0.05)
        with self.lock:
            self.active -= 1
        if process == "web" and replica == self.fail_replica:
            raise DeployError(f"cannot start web.{replica}")
        return ContainerInfo(f"id-{process}-{replica}", f"{process}.{replica}", app, release,
                             process, replica, "running", "127.0.0.1",
                             5000 + replica if web else None, "")

    def remove(self, containers, stop_timeout: int = 10) -> None:
        self.removed.extend(containers)


def release() -> Release:
    return Release("shop", 3, "i/shop:v3", "abc", {}, {"web": "httpd", "worker": "w"},
                   "d", "alice", 0.0, "pending", {})


def deployer(runtime: FakeRuntime, **settings: object) -> Deployer:
    return Deployer(Settings(**settings), FakeStore(), None, runtime, None)  # type: ignore[arg-type]


def test_replicas_start_side_by_side_in_order():
    runtime = FakeRuntime()
    started = deployer(runtime)._start_all("shop", release())
    assert [(c.process, c.replica) for c in started] == [
        ("web", 1), ("web", 2), ("web", 3), ("worker", 1)]
    assert runtime.peak > 1
    assert runtime.removed == []


def test_one_failed_start_removes_the_others_and_raises():
    runtime = FakeRuntime(fail_replica=2)
    with pytest.raises(DeployError, match="web.2"):
        deployer(runtime)._start_all("shop", release())
    assert sorted((c.process, c.replica) for c in runtime.removed) == [
        ("web", 1), ("web", 3), ("worker", 1)]


def test_timings_line():
    timings = Timings({"build": 0.4123, "start": 0.2})
    assert timings.text() == "build=0.412 start=0.200"


def test_shipped_webhook_hook_runs_only_with_a_url():
    assert SHIPPED not in hook_dirs("", "")
    assert SHIPPED in hook_dirs("http://127.0.0.1:9/", "")


def test_the_operator_s_hooks_run_without_a_webhook_url(tmp_path):
    """Issue 13: hooks of ``hooks_dir`` run whether or not ``webhook_url`` is set."""
    assert hook_dirs("", str(tmp_path)) == [tmp_path]
    assert hook_dirs("http://127.0.0.1:9/", str(tmp_path)) == [SHIPPED, tmp_path]


class FakeRoutes:
    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table

    def get_many(self, hosts) -> dict[str, list[str]]:
        return {host: list(self.table.get(host, [])) for host in hosts}

    def swap(self, app: str, hosts, backends) -> None:
        for host in hosts:
            self.table[host] = [app, *backends] if backends else []

    def remove(self, hosts) -> None:
        self.swap("", hosts, [])


class FailingActivationStore(FakeStore):
    def __init__(self) -> None:
        self.statuses: dict[int, str] = {}

    def domains(self, app: str) -> list[str]:
        return ["www.shop.example"]

    def activate_release(self, app: str, version: int) -> None:
        from gitpaas.errors import ServiceError

        raise ServiceError("state store unavailable")

    def set_release_status(self, app: str, version: int, status: str) -> None:
        self.statuses[version] = status


def test_a_failure_after_the_swap_puts_the_old_routes_back(monkeypatch):
    from gitpaas.errors import ServiceError

    old = {"shop.paas.localhost": ["shop", "http://127.0.0.1:1111"],
           "www.shop.example": ["shop", "http://127.0.0.1:1111"]}
    routes = FakeRoutes(dict(old))
    store = FailingActivationStore()
    runtime = FakeRuntime()
    d = Deployer(Settings(), store, None, runtime, routes)  # type: ignore[arg-type]
    monkeypatch.setattr(d, "_check_one", lambda *a: None)
    monkeypatch.setattr(d, "_hooks", lambda *a: None)
    with pytest.raises(ServiceError):
        d._roll_out("shop", release(), lambda line: None, Timings())
    assert routes.table == old
    assert len(runtime.removed) == 4 and store.statuses == {3: "failed"}


class WatchedRuntime(FakeRuntime):
    """worker.1 exits 0.3 s after the watch starts; the others keep running."""

    def __init__(self) -> None:
        super().__init__()
        self.t0 = time.monotonic()

    def get(self, container_id: str) -> ContainerInfo:
        status = "running"
        if container_id == "id-worker-1" and time.monotonic() - self.t0 > 0.3:
            status = "exited"
        process, replica = container_id.split("-")[1:]
        return ContainerInfo(container_id, f"{process}.{replica}", "shop", 3, process,
                             int(replica), status, "127.0.0.1", None, "")

    def logs(self, container_id: str, tail: int = 50) -> str:
        return "boom"


def test_each_process_is_watched_side_by_side_for_the_whole_window():
    """Issue 13: 4 workers and a 0.5 s window: each is watched for 0.5 s (not 0.125 s
    one after another), so worker.1 exiting at 0.3 s fails the release."""
    runtime = WatchedRuntime()
    d = deployer(runtime, process_check_seconds=0.5)
    workers = [runtime.get(f"id-worker-{i}") for i in range(1, 5)]
    runtime.t0 = time.monotonic()
    with pytest.raises(DeployError, match="worker.1"):
        d._check_all(release(), workers, lambda _: None)
    healthy = WatchedRuntime()
    d = deployer(healthy, process_check_seconds=0.5)
    started = time.monotonic()
    d._check_all(release(), [w for w in workers if w.replica != 1], lambda _: None)
    assert 0.5 <= time.monotonic() - started < 1.5  # side by side: one window, not three


class ReleasingStore(FakeStore):
    """Allocates version 7 in ``add_release``, records statuses."""

    def __init__(self) -> None:
        self.statuses: dict[int, str] = {}

    def get_config(self, app: str) -> dict[str, str]:
        return {"K": "v"}

    def add_release(self, app, image, commit, config, processes, description, created_by,
                    status="pending", extra=None) -> Release:
        image = image(7) if callable(image) else image
        self.statuses[7] = status
        return Release(app, 7, image, commit, dict(config), dict(processes), description,
                       created_by, 0.0, status, dict(extra or {}))

    def set_release_status(self, app: str, version: int, status: str) -> None:
        self.statuses[version] = status


class RecordingBuilder:
    def __init__(self) -> None:
        self.removed: list[str] = []

    def remove(self, tag: str) -> None:
        self.removed.append(tag)


def test_an_error_after_go_live_neither_removes_the_image_nor_fails_the_deploy(monkeypatch):
    """Issue 13: the cleanup scope ends at go-live; the version is the store's."""
    from gitpaas.appjson import AppSpec

    store, builder = ReleasingStore(), RecordingBuilder()
    d = Deployer(Settings(instance="gp"), store, builder, FakeRuntime(), None)  # type: ignore[arg-type]
    monkeypatch.setattr(d, "_app_spec", lambda repo, commit: AppSpec())
    monkeypatch.setattr(d, "_processes", lambda repo, commit: {})
    built = []
    monkeypatch.setattr(d, "_build", lambda app, rel, *a: built.append(rel.image))

    def go_live(app, rel, progress, timings):
        store.statuses[rel.version] = "succeeded"

    monkeypatch.setattr(d, "_go_live", go_live)

    def hooks(event, release, progress):
        if event == "post-deploy":
            raise RuntimeError("a bug after go-live")

    monkeypatch.setattr(d, "_hooks", hooks)
    retired = []
    monkeypatch.setattr(d, "retire", lambda app, version: retired.append(version))
    lines: list[str] = []
    release = d.deploy_commit("shop", None, b"a" * 40, "alice", lines.append)  # type: ignore[arg-type]
    assert release.version == 7 and release.image == "gp/shop:v7" and built == ["gp/shop:v7"]
    assert builder.removed == [] and store.statuses == {7: "succeeded"}
    assert retired == [7]
    assert any("the release is live" in line for line in lines), lines
    # Before go-live, the same error undoes the build and fails the release.
    monkeypatch.setattr(d, "_go_live", lambda *a: (_ for _ in ()).throw(RuntimeError("x")))
    with pytest.raises(RuntimeError):
        d.deploy_commit("shop", None, b"a" * 40, "alice", lines.append)  # type: ignore[arg-type]
    assert builder.removed == ["gp/shop:v7"] and store.statuses == {7: "failed"}


class RetiringRuntime:
    """Containers of releases 1..20; removal takes a while and is watched for overlap."""

    def __init__(self) -> None:
        self.alive = {v: ContainerInfo(f"id{v}", f"web.{v}", "shop", v, "web", 1, "running",
                                       "127.0.0.1", 5000 + v, "") for v in range(1, 21)}
        self.lock = threading.Lock()
        self.listings = 0
        self.active = self.peak = 0

    def list(self, app: str) -> list[ContainerInfo]:
        with self.lock:
            self.listings += 1
            return list(self.alive.values())

    def remove(self, containers, stop_timeout: int = 10) -> None:
        time.sleep(0.05)
        with self.lock:
            for c in containers:
                self.alive.pop(c.release, None)


def test_one_retirement_at_a_time_per_app(monkeypatch):
    """Issue 19: releases 2..20 going live in a burst are retired by one thread, in passes
    below the newest live version; only the live release is left."""
    runtime = RetiringRuntime()
    d = deployer(runtime, drain_seconds=0.0)  # type: ignore[arg-type]
    monkeypatch.setattr(d, "prune_images", lambda app: None)
    passes: list[int] = []
    inside = threading.Semaphore(1)
    real = d._retire

    def watched(app: str, version: int) -> None:
        assert inside.acquire(blocking=False), "two retirements of one app at once"
        try:
            passes.append(version)
            real(app, version)
        finally:
            inside.release()

    monkeypatch.setattr(d, "_retire", watched)
    for version in range(2, 21):
        d.retire("shop", version)
        time.sleep(0.005)
    d.wait_retired(10)
    assert list(runtime.alive) == [20]
    assert passes == sorted(passes) and passes[-1] == 20 and len(passes) < 19


class SlowSecondRuntime(FakeRuntime):
    """web.2 starts 0.3 s after web.1; records when each start ended and every inspect."""

    def __init__(self, fail_replica: int | None = None) -> None:
        super().__init__(fail_replica)
        self.ended: dict[str, float] = {}
        self.inspected: list[str] = []

    def start(self, app, release, image, process, replica, env, command=None, web=False,
              mem_limit=None, nano_cpus=None, mounts=None) -> ContainerInfo:
        if replica == 2:
            time.sleep(0.3)
        info = super().start(app, release, image, process, replica, env, command, web,
                             mem_limit, nano_cpus, mounts)
        self.ended[info.name] = time.monotonic()
        return info

    def get(self, container_id: str) -> ContainerInfo:
        self.inspected.append(container_id)
        process, replica = container_id.split("-")[1:]
        return ContainerInfo(container_id, f"{process}.{replica}", "shop", 3, process,
                             int(replica), "running", "127.0.0.1", None, "")


class WebOnlyStore(FakeStore):
    def formation(self, app: str) -> dict[str, int]:
        return {"web": 2}


def test_a_check_starts_with_its_container_not_after_the_last_start():
    """Issue 17: web.1's check runs while web.2 still starts; its first look at the
    container is the start's own (no second inspect); ``all_started`` comes between."""
    runtime = SlowSecondRuntime()
    d = Deployer(Settings(), WebOnlyStore(), None, runtime, None)  # type: ignore[arg-type]
    checked: dict[str, float] = {}
    events: list[str] = []

    def check(info: ContainerInfo, refresh) -> None:
        assert refresh(info) is info  # the start's reading, no inspect
        checked[info.name] = time.monotonic()
        events.append(f"checked {info.name}")

    started = d._start_all("shop", release(), check, lambda: events.append("all started"))
    assert [c.name for c in started] == ["web.1", "web.2"]
    assert checked["web.1"] < runtime.ended["web.2"] - 0.2  # overlapped with web.2's start
    assert events.index("checked web.1") < events.index("all started")
    assert runtime.inspected == [] and runtime.removed == []


def test_a_failed_check_removes_every_container_and_stops_the_other_checks():
    runtime = SlowSecondRuntime()
    d = Deployer(Settings(), WebOnlyStore(), None, runtime, None)  # type: ignore[arg-type]
    aborted: list[str] = []

    def check(info: ContainerInfo, refresh) -> None:
        if info.replica == 1:
            raise DeployError("health check of web.1: GET / returned 500")
        time.sleep(0.05)
        try:
            while True:  # a check that would wait out its deadline
                refresh(info)
                time.sleep(0.01)
        except BaseException:
            aborted.append(info.name)
            raise

    t0 = time.monotonic()
    with pytest.raises(DeployError, match="web.1"):
        d._start_all("shop", release(), check)
    assert time.monotonic() - t0 < 2
    assert sorted(c.name for c in runtime.removed) == ["web.1", "web.2"]
    assert aborted in ([], ["web.2"])


def test_roll_out_checks_web_through_the_real_health_check(monkeypatch):
    """The deployer's check of each web container (wait_healthy), overlapped: a container
    that exited fails the deploy and every container is removed."""
    runtime = SlowSecondRuntime()

    def get(container_id: str) -> ContainerInfo:
        process, replica = container_id.split("-")[1:]
        return ContainerInfo(container_id, f"{process}.{replica}", "shop", 3, process,
                             int(replica), "exited", "127.0.0.1", None, "")

    runtime.get = get  # type: ignore[method-assign]
    runtime.logs = lambda container_id, tail=50: "crashed"  # type: ignore[attr-defined]
    d = Deployer(Settings(), WebOnlyStore(), None, runtime, None)  # type: ignore[arg-type]
    lines: list[str] = []
    with pytest.raises(DeployError, match="exited"):
        d._start_all("shop", release(), functools.partial(d._check_one, release(),
                                                          lines.append))
    assert "-----> Checking web.1" in lines
    assert sorted(c.name for c in runtime.removed) == ["web.1", "web.2"]


class NetworkRuntime(FakeRuntime):
    """Making the app's network takes 0.3 s (Docker's create with many networks)."""

    def __init__(self) -> None:
        super().__init__()
        self.prepared: list[tuple[str, float]] = []

    def prepare_network(self, app: str) -> None:
        time.sleep(0.3)
        self.prepared.append((app, time.monotonic()))


def test_the_network_is_made_beside_the_build(monkeypatch):
    """Issue 17: a first deploy's network creation overlaps its build, and the roll-out
    (the containers' creates) too: a start waits for it (scale round 3), and that wait
    is its own stage."""
    from gitpaas.appjson import AppSpec

    runtime = NetworkRuntime()
    store = ReleasingStore()
    d = Deployer(Settings(instance="gp"), store, RecordingBuilder(), runtime, None)  # type: ignore[arg-type]
    monkeypatch.setattr(d, "_app_spec", lambda repo, commit: AppSpec())
    monkeypatch.setattr(d, "_processes", lambda repo, commit: {})
    monkeypatch.setattr(d, "_build", lambda *a: time.sleep(0.1))
    monkeypatch.setattr(d, "_after_live", lambda *a: None)
    went_live: list[float] = []
    stages: dict[str, float] = {}

    def go_live(app, rel, progress, timings) -> None:
        went_live.append(time.monotonic())
        d._network_ready[app]()  # what a start does between its create and its start
        went_live.append(time.monotonic())
        stages.update(timings.stages)

    monkeypatch.setattr(d, "_go_live", go_live)
    t0 = time.monotonic()
    d.deploy_commit("shop", None, b"a" * 40, "alice", lambda line: None)  # type: ignore[arg-type]
    assert [app for app, _ in runtime.prepared] == ["shop"]
    assert went_live[0] < runtime.prepared[0][1] <= went_live[1]  # the start waited
    assert went_live[1] - t0 < 0.35  # side by side: not 0.1 + 0.3
    assert 0.1 < stages["netwait"] < 0.3  # the wait left after the build is its own stage
    assert d._network_ready == {}  # only for this roll-out


class RefillRuntime(FakeRuntime):
    """Records when the deployer lets serve's filler make spare networks again."""

    def __init__(self, events: list[str]) -> None:
        super().__init__()
        self.events = events

    def prepare_network(self, app: str) -> None:
        self.events.append("prepare")

    def refill_networks(self) -> None:
        self.events.append("refill")


@pytest.mark.parametrize("fails", [False, True])
def test_spare_networks_are_refilled_after_the_starts_not_beside_them(monkeypatch, fails):
    """Issue 17, scale: a claimed spare is made again once the deploy's starts are done
    (or the deploy failed), so that Docker's network create competes with neither the
    build nor the starts."""
    from gitpaas.appjson import AppSpec

    events: list[str] = []
    runtime = RefillRuntime(events)
    d = Deployer(Settings(instance="gp"), ReleasingStore(), RecordingBuilder(), runtime,  # type: ignore[arg-type]
                 None)
    monkeypatch.setattr(d, "_app_spec", lambda repo, commit: AppSpec())
    monkeypatch.setattr(d, "_processes", lambda repo, commit: {})
    monkeypatch.setattr(d, "_build", lambda *a: events.append("build"))
    monkeypatch.setattr(d, "_after_live", lambda *a: events.append("after"))
    monkeypatch.setattr(d, "_drop_unused_network", lambda app: events.append("drop"))

    def go_live(app, rel, progress, timings) -> None:
        d._network_ready[app]()
        events.append("starts")
        if fails:
            raise DeployError("web.1 exited")

    monkeypatch.setattr(d, "_go_live", go_live)
    if fails:
        with pytest.raises(DeployError):
            d.deploy_commit("shop", None, b"a" * 40, "alice", lambda line: None)  # type: ignore[arg-type]
        assert [e for e in events if e != "prepare"] == [  # prepare: in a thread
            "build", "starts", "refill", "drop", "refill"]
    else:
        d.deploy_commit("shop", None, b"a" * 40, "alice", lambda line: None)  # type: ignore[arg-type]
        assert [e for e in events if e != "prepare"] == ["build", "starts", "refill", "after"]
