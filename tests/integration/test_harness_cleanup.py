"""The test harness removes what the tests built, tagged or not."""

from __future__ import annotations

import io
import tarfile

from tests.conftest import busybox_tar, unique
from tests.harness import remove_image_tree


def context(base: str) -> io.BytesIO:
    buf = io.BytesIO()
    files = ((b"Dockerfile", f"FROM {base}\nCOPY f /f\n".encode()), (b"f", unique("x").encode()))
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files:
            info = tarfile.TarInfo(name.decode())
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


def test_an_untagged_image_built_on_the_base_is_removed_with_it(docker_client):
    repo = f"gitpaas-test-{unique('h')}/busybox"
    base = f"{repo}:latest"
    docker_client.api.import_image_from_data(busybox_tar(), repository=repo, tag="latest")
    child_tag = f"{repo}-child:latest"
    built = []
    for _ in range(2):  # the same tag built twice: the first image loses its tag
        for _ in docker_client.api.build(fileobj=context(base), custom_context=True,
                                         tag=child_tag, rm=True, decode=True):
            pass
        built.append(docker_client.images.get(child_tag).id)
    base_id = docker_client.images.get(base).id
    dangling = {i["Id"] for i in docker_client.api.images(filters={"dangling": True})}
    assert built[0] != built[1] and built[0] in dangling

    remove_image_tree(docker_client, base)

    left = {i["Id"] for i in docker_client.api.images(all=True)}
    assert not left & {*built, base_id}
