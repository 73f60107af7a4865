"""Containers: the only package that knows how and where they run."""

from .docker import ContainerInfo, DockerRuntime

__all__ = ["ContainerInfo", "DockerRuntime"]
