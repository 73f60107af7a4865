"""Containers: the only package that knows how and where they run."""

from .docker import ContainerInfo, DockerRuntime
from .volumes import StorageMount, Volumes

__all__ = ["ContainerInfo", "DockerRuntime", "StorageMount", "Volumes"]
