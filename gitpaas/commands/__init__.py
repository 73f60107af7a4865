"""The command surface: one module per noun, all registered in ``registry``."""

import importlib

MODULES = ("help", "keys", "apps", "config", "ps", "releases", "logs", "domains", "sharing",
           "audit", "git", "datastores", "storage", "run", "cron", "drains", "edge", "certs",
           "backups", "doctor", "hosts")


def load_all() -> None:
    """Import every command module so that it registers its commands."""
    for name in MODULES:
        importlib.import_module(f"{__name__}.{name}")
