"""The config service: an app's config vars, read, and changed with a roll-out.

A change makes a new release (the current image, the new config) under the app's lock;
the config is stored only once that release is live, so the store never disagrees with
what runs. Without a release yet, or with ``no_restart``, the config is only stored.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..datastores import mask_secrets
from ..errors import NotFound
from ..store import App
from .access import Access, Service, Writer, reported_failure

if TYPE_CHECKING:
    from ..platform import Platform


def key_list(keys: list[str]) -> str:
    """``A`` or ``A, B`` (as Heroku prints them)."""
    return ", ".join(keys)


class Config(Service):
    """What a key reads and changes of its apps' config vars (access checked first)."""

    def values(self, name: str, reveal: bool = True) -> dict[str, str]:
        """The app's config vars; unless ``reveal``, the secrets its datastores set masked
        (as ``mysql:info`` shows them; a password the user set stays as it is)."""
        app = self.access.app(name)
        store = self.platform.store
        config = store.get_config(app.name)
        if reveal or not store.datastores(app.name):
            return config
        return mask_secrets(config)

    def get(self, name: str, key: str) -> str:
        """One config var's value exactly as set."""
        app = self.access.app(name)
        config = self.platform.store.get_config(app.name)
        if key not in config:
            raise NotFound(f"{app.name} has no config var {key}")
        return config[key]

    def change(self, name: str, values: dict[str, str], unset: list[str], no_restart: bool,
               description: str, verb: str, write: Writer) -> None:
        """Set ``values`` and remove ``unset`` under the app's lock (``apply_change``)."""
        app = self.access.app(name)
        with self.platform.lock(app.name, f"config change by {self.key.name}",
                                self.access.notify):
            apply_change(self.platform, self.access, app, values, unset, no_restart,
                         description, verb, write)


def apply_change(platform: Platform, access: Access, app: App, values: dict[str, str],
                 unset: list[str], no_restart: bool, description: str, verb: str,
                 write: Writer) -> None:
    """Store a config change, and roll out a new release unless told not to; the event
    ``config`` is recorded once it is stored.

    The caller holds the app's lock. The config is stored only once the new release is
    live; a failed roll-out raises and changes nothing. ``write`` gets the progress text
    ("Setting A and restarting shop... done, v3").
    """
    store = platform.store
    changed = key_list(list(values) or unset)
    config = store.get_config(app.name)
    missing = [k for k in unset if k not in config]
    if missing:
        raise NotFound(f"{app.name} has no config var {key_list(missing)}")
    new = {k: v for k, v in config.items() if k not in unset}
    new.update(values)
    current = store.current_release(app.name)
    if current is None or no_restart:
        store.set_config(app.name, values, unset)
        access.record("config", app.name, description)
        why = "no release yet" if current is None else "--no-restart"
        write(f"{verb} {changed} on {app.name}... done"
              f" (stored; {why}: it applies at the next deploy or restart)\n")
        return
    write(f"{verb} {changed} and restarting {app.name}... ")
    with reported_failure(write):
        release = platform.deployer.deploy_release(app.name, current, new, description,
                                                   access.key.name, lambda _: None)
    store.set_config(app.name, values, unset)
    access.record("config", app.name, description)
    write(f"done, v{release.version}\n")
