"""``python -m gitpaas.router``: run the router with the settings from the environment."""

from __future__ import annotations

import logging

from .. import settings as settings_module
from . import run


def main() -> None:
    """Load the settings (``GITPAAS_*``, config file) and serve until SIGTERM/SIGINT."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = settings_module.load()
    run(settings, workers=settings.router_workers)


if __name__ == "__main__":
    main()
