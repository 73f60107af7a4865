"""``docker build`` of a tar context, build output streamed line by line."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import IO

import docker
import docker.errors

from ..errors import DeployError, ServiceError
from . import policy

BUILD_TIMEOUT = 1800
BASE_LABELS = ("gitpaas.recipe-hash", "gitpaas.recipe")  # set by images.py on base images
# Build chatter that says nothing to the person pushing.
NOISE = re.compile(r"\s*(---> [0-9a-f]{12}$|---> Running in |Removing intermediate container|"
                   r"---> Using cache$)")


class DockerBuilder:
    """Builds images with the Docker engine."""

    def __init__(self, client: docker.DockerClient) -> None:
        self.client = client

    def build(self, context: IO[bytes], tag: str, labels: Mapping[str, str],
              progress: Callable[[str], None], buildargs: Mapping[str, str] | None = None,
              dockerfile: str = "Dockerfile") -> str:
        """Build ``context`` as ``tag``; return the image id. Raises ``DeployError``."""
        try:
            stream = self.client.api.build(
                fileobj=context, custom_context=True, tag=tag, rm=True, forcerm=True,
                decode=True, labels=dict(labels), buildargs=dict(buildargs or {}),
                dockerfile=dockerfile, pull=False, timeout=BUILD_TIMEOUT)
            image_id = None
            partial = ""
            for chunk in stream:
                if "error" in chunk or "errorDetail" in chunk:
                    detail = chunk.get("errorDetail", {}).get("message") or chunk.get("error")
                    raise DeployError(f"build failed: {' '.join(str(detail).split())}")
                if "aux" in chunk and "ID" in chunk["aux"]:
                    image_id = chunk["aux"]["ID"]
                text = partial + chunk.get("stream", "")
                *lines, partial = text.split("\n")
                for line in lines:
                    if line.strip() and not NOISE.match(line):
                        progress(f"       {line.rstrip()}")
            if partial.strip():
                progress(f"       {partial.rstrip()}")
        except docker.errors.APIError as exc:
            raise DeployError(f"build failed: {exc.explanation or exc}") from exc
        except docker.errors.DockerException as exc:
            raise ServiceError(f"Docker is unavailable: {exc}") from exc
        return self._refuse_reserved_labels(tag, image_id)

    def _refuse_reserved_labels(self, tag: str, image_id: str | None) -> str:
        """The image id; a build whose image claims gitpaas's labels is removed, refused."""
        try:
            image = self.client.images.get(image_id or tag)
        except docker.errors.DockerException as exc:
            raise ServiceError(f"Docker is unavailable: {exc}") from exc
        forged = policy.reserved_labels(image.labels, BASE_LABELS)
        if forged:
            self.remove(tag)
            raise DeployError(f"build failed: the image sets reserved label(s) "
                              f"{', '.join(forged)} (gitpaas.* labels are gitpaas's own)")
        return image.id

    def remove(self, tag: str) -> None:
        """Remove an image tag, ignoring one that is gone or still in use."""
        try:
            self.client.images.remove(tag, noprune=False)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError:
            pass
