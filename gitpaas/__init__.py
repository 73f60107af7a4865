"""gitpaas: a self-hosted, git-push platform as a service."""

__version__ = "0.1.0"
