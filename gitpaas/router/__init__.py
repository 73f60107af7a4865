"""gitpaas' HTTP router: a Hipache-compatible reverse proxy reading routes from Redis.

``run(settings, workers)`` serves until SIGTERM/SIGINT; ``start_in_thread(settings)``
returns a handle with ``port`` and ``stop()``. See docs/router.md.
"""

from .server import RouterHandle, run, start_in_thread

__all__ = ["RouterHandle", "run", "start_in_thread"]
