"""Containers: the only package that knows how and where they run."""

from .docker import ContainerInfo, DockerRuntime, Sandbox
from .network import AppNetworks

__all__ = ["AppNetworks", "ContainerInfo", "DockerRuntime", "Sandbox"]
