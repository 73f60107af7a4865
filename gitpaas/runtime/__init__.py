"""Containers: the only package that knows how and where they run."""

from .docker import ContainerInfo, DockerRuntime, Sandbox
from .network import AppNetworks
from .volumes import StorageMount, Volumes

__all__ = ["AppNetworks", "ContainerInfo", "DockerRuntime", "Sandbox", "StorageMount",
           "Volumes"]
