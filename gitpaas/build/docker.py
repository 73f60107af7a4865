"""``docker build`` of a tar context, build output streamed line by line."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import IO, Any

import docker
import docker.errors
import requests
import urllib3
from docker.utils import parse_bytes

from ..errors import DeployError, ServiceError
from . import policy
from .sandbox import BuildSandbox

BUILD_TIMEOUT = 1800
BASE_LABELS = ("gitpaas.recipe-hash", "gitpaas.recipe")  # set by images.py on base images
# Build chatter that says nothing to the person pushing.
NOISE = re.compile(r"\s*(---> [0-9a-f]{12}$|---> Running in |Removing intermediate container|"
                   r"---> Using cache$)")


@dataclass(frozen=True)
class BuildLimits:
    """What one build may use (settings ``build_*``); 0 or "" means no limit."""

    memory: str = ""  # e.g. "1g": RUN steps over it are killed (no swap on top)
    cpu_shares: int = 0  # relative CPU weight against app containers (1024 = theirs)
    cpuset: str = ""  # e.g. "0-1": the CPUs builds may use
    shm_size: str = ""
    timeout: float = BUILD_TIMEOUT  # seconds, the whole build

    def container_limits(self) -> dict[str, Any]:
        """docker-py ``container_limits`` of every container the build runs."""
        limits: dict[str, Any] = {}
        if self.memory:
            limits["memory"] = limits["memswap"] = parse_bytes(self.memory)
        if self.cpu_shares:
            limits["cpushares"] = self.cpu_shares
        if self.cpuset:
            limits["cpusetcpus"] = self.cpuset
        return limits

    def build_options(self) -> dict[str, Any]:
        """docker-py ``api.build`` arguments for these limits (its stubs want ints where
        the API takes floats, hence a plain dict)."""
        return {"timeout": self.timeout, "container_limits": self.container_limits(),
                "shmsize": parse_bytes(self.shm_size) if self.shm_size else None}


def explain(detail: str, limits: BuildLimits) -> str:
    """The builder's error in one line; a RUN killed (137) names the memory limit."""
    text = " ".join(detail.split())
    if text.endswith("non-zero code: 137") and limits.memory:
        text += (f" (killed: over the build memory limit of {limits.memory}, setting "
                 "build_memory)")
    return f"build failed: {text}"


class DockerBuilder:
    """Builds images with the Docker engine, in the build sandbox when given one."""

    def __init__(self, client: docker.DockerClient, sandbox: BuildSandbox | None = None,
                 limits: BuildLimits | None = None) -> None:
        self.client = client
        self.sandbox = sandbox
        self.limits = limits or BuildLimits()

    def build(self, context: IO[bytes], tag: str, labels: Mapping[str, str],
              progress: Callable[[str], None], buildargs: Mapping[str, str] | None = None,
              dockerfile: str = "Dockerfile") -> str:
        """Build ``context`` as ``tag``; return the image id. Raises ``DeployError``.

        A build that runs longer than ``limits.timeout`` is stopped: at its next output
        line, or when it printed nothing for that long (the connection is dropped, and
        the daemon cancels a build whose client went away)."""
        limits = self.limits
        network = self.sandbox.ensure() if self.sandbox else None
        deadline = time.monotonic() + limits.timeout
        stream = None
        try:
            stream = self.client.api.build(
                fileobj=context, custom_context=True, tag=tag, rm=True, forcerm=True,
                decode=True, labels=dict(labels), buildargs=dict(buildargs or {}),
                dockerfile=dockerfile, pull=False, network_mode=network,
                **limits.build_options())
            image_id = None
            partial = ""
            for chunk in stream:
                if time.monotonic() > deadline:
                    raise DeployError(f"build failed: over the time limit of "
                                      f"{limits.timeout:g} s (setting build_timeout)")
                if "error" in chunk or "errorDetail" in chunk:
                    detail = chunk.get("errorDetail", {}).get("message") or chunk.get("error")
                    raise DeployError(explain(str(detail), limits))
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
        except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError) as exc:
            if time.monotonic() > deadline - 1:
                raise DeployError(f"build failed: over the time limit of {limits.timeout:g}"
                                  " s (setting build_timeout)") from exc
            raise ServiceError(f"Docker is unavailable: {exc}") from exc
        finally:
            if stream is not None:
                stream.close()  # drops the connection: the daemon cancels the build
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
        if image.id is None:
            raise ServiceError(f"Docker gave no id for the image {tag}")
        return image.id

    def remove(self, tag: str) -> None:
        """Remove an image tag, ignoring one that is gone or still in use."""
        try:
            self.client.images.remove(tag, noprune=False)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError:
            pass
