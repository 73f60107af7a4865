"""Issue 11: one tenant's build or container reaches no other tenant's app (real Docker)."""

from __future__ import annotations

import io
import tarfile
import threading
import time

import pytest

from gitpaas import settings as settings_mod
from gitpaas.errors import DeployError
from gitpaas.platform import Platform
from gitpaas.reconcile import Reconciler

pytestmark = pytest.mark.timeout(300)
WEB = "httpd -f -p 5000 -h /tmp"


@pytest.fixture
def platform(tmp_path, instance, docker_client, busybox_image):
    p = Platform(settings_mod.load({
        "data_dir": tmp_path / "data", "instance": instance, "redis_url":
        "redis://127.0.0.1:6379/15", "stop_timeout": 1, "health_timeout": 20,
        "default_memory": "", "build_allowed_images": busybox_image}, environ={}))
    p.__dict__["docker"] = docker_client
    yield p
    for c in docker_client.containers.list(all=True,
                                           filters={"label": f"gitpaas.instance={instance}"}):
        c.remove(force=True)
    for app in ("victim", "mal"):
        p.runtime.remove_network(app)
    p.routes.close()


def deploy(platform, image: str, app: str):
    store = platform.store
    if store.find_app(app) is None:
        store.create_app(app, "admin", "main")
    release = store.add_release(app, image, "c" * 40, {}, {"web": WEB}, "test", "admin")
    platform.deployer.start_release(app, release, lambda _: None)
    platform.deployer.wait_retired()
    return store.current_release(app)


def context(files: dict[str, str]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


def wait_for(predicate, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("timed out")


def test_forged_labels_on_a_build_container_touch_no_app(platform, busybox_image,
                                                         docker_client):
    """Finding 2: a build's intermediate container carries its Dockerfile's labels."""
    instance = platform.settings.instance
    current = deploy(platform, busybox_image, "victim")
    victim = platform.runtime.list("victim")
    labels = (f"gitpaas.instance={instance} gitpaas.app=victim "
              f"gitpaas.release={current.version} gitpaas.process=web gitpaas.replica=1")
    dockerfile = f"FROM {busybox_image}\nLABEL {labels}\nRUN sleep 6\n"
    errors: list[Exception] = []

    def build():  # straight to the builder: the Dockerfile check is not what is tested here
        try:
            platform.deployer.builder.build(context({"Dockerfile": dockerfile}),
                                            f"{instance}/mal:v1", {}, lambda _: None)
        except DeployError as exc:
            errors.append(exc)

    thread = threading.Thread(target=build)
    thread.start()
    try:
        forged = wait_for(lambda: [c for c in docker_client.api.containers(
            filters={"label": ["gitpaas.app=victim", f"gitpaas.instance={instance}"]})
            if c["Id"] not in {v.id for v in victim}])
        assert forged  # the build container claims to be victim's web.1
        report = Reconciler(platform).run_once(grace=0)
        assert report.removed == [] and report.started == []
        assert [c.id for c in platform.runtime.list("victim")] == [v.id for v in victim]
        assert docker_client.containers.get(victim[0].id).status == "running"
    finally:
        thread.join(60)
    # the image carries the reserved labels: the builder refuses and removes it
    assert errors and "reserved label" in errors[0].message
    assert not docker_client.images.list(name=f"{instance}/mal")
