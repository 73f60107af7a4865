"""The keys service: the registered SSH keys, added and removed.

Admins add and remove any key (the first key ever added is an admin); an app's owner adds
and removes deploy keys of it. Each change is recorded in the audit trail.
"""

from __future__ import annotations

from collections.abc import Callable

from .. import names, sshkeys
from ..errors import Forbidden, InvalidInput
from ..store import Key
from .access import Service


class Keys(Service):
    """What ``key`` does to the registered keys."""

    def all(self) -> list[Key]:
        """Every registered key (the registry lets admins only in)."""
        return self.platform.store.list_keys()

    def add(self, name: str, read_key: Callable[[], str], deploy_only: str | None
            ) -> tuple[Key, str]:
        """Register the public key ``read_key`` gives (read once the checks passed) under
        ``name``: any key (admins), or a deploy key of the app ``deploy_only`` (its owner
        or an admin). The new key and its fingerprint."""
        if deploy_only is not None:
            deploy_only = self.access.owned(deploy_only, "add a deploy key to it").name
        elif not self.key.is_admin:
            raise Forbidden("only admins may do that")
        name = names.key_name(name)
        parsed = sshkeys.parse(read_key())
        added = self.platform.store.add_key(name, parsed.fingerprint, parsed.line, deploy_only)
        self.access.record("keys:add", deploy_only,
                           f"{name} (deploy key)" if deploy_only else name)
        return added, parsed.fingerprint

    def remove(self, name: str) -> list[str]:
        """Remove the key ``name`` (admins; an app's owner: its deploy keys); the names of
        the apps it owned, which pass to this key."""
        if name == self.key.name:
            raise InvalidInput("you cannot remove the key you are using")
        if not self.key.is_admin:
            self.require_deploy_key_owner(names.key_name(name))
        owned = self.platform.store.remove_key(name, self.key.name)
        self.access.record("keys:remove", None, name)
        return owned

    def require_deploy_key_owner(self, name: str) -> None:
        """A non-admin may remove only a deploy key of an app it owns; any other key name,
        existing or not, gets the same refusal (names of others' keys stay unknown)."""
        store = self.platform.store
        target = next((k for k in store.list_keys() if k.name == name), None)
        app = store.find_app(target.deploy_app) if target and target.deploy_app else None
        if app is None or app.owner != self.key.name:
            raise Forbidden("only admins, or the owner of a deploy key's app, may remove a key")
