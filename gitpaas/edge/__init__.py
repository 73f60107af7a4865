"""The edge: nginx (with its Lua module) serves app traffic; gitpaas configures it.

nginx is the data plane: it reads Hipache's routes from Redis itself (``lua/``), so it
keeps serving while ``gitpaas serve`` restarts. This package renders its configuration
(:mod:`.config`), starts, adopts, reloads, supervises and stops it (:mod:`.nginx`).
"""

from .config import EdgeConfig
from .nginx import Edge

__all__ = ["Edge", "EdgeConfig"]
