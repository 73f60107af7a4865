"""Durable state: apps, releases, config, keys, sharing, domains, formation, events.

SQLite by default (embedded, one file in the data dir); MySQL when the database URL says
``mysql://`` so several nodes can share state. One schema for both (see ``schema.py``).
"""

from .models import App, Backup, Datastore, Key, Mount, Release
from .store import Store, open_store

__all__ = ["App", "Backup", "Datastore", "Key", "Mount", "Release", "Store", "open_store"]
