"""Which extra host names an app may take (``domains:add``): the policy, not the doing.

Non-admins: no IP literal, ``localhost`` nor the server's own names; no wildcard and
nothing under the platform's domain; nothing another app holds, nor a parent of another
app's domain or a name under one (unless the key may use that app too).
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

from .. import names
from ..addresses import default_host
from ..errors import Conflict, Forbidden, InvalidInput
from ..settings import Settings
from ..store import App, Key

if TYPE_CHECKING:
    from ..platform import Platform


def server_names(settings: Settings) -> set[str]:
    """The names the server itself answers at: the domain, ``server_names`` and the
    machine's host name."""
    found = {settings.domain, socket.gethostname().lower()}
    found |= {n.strip().lower().rstrip(".") for n in settings.server_names.split(",")}
    return {n for n in found if n}


def check_not_the_server(platform: Platform, key: Key, host: str) -> None:
    """Non-admins: no IP literal (any notation), ``localhost``, nor the server's names."""
    if key.is_admin:
        return
    if names.is_ip_literal(host):
        raise Forbidden(f"only admins may add {host}: an IP address is the server's own")
    if names.is_local_name(host) or host.removeprefix("*.") in server_names(
            platform.settings):
        raise Forbidden(f"only admins may add {host}: it is one of the server's own names")


def check_no_kin(platform: Platform, key: Key, app: App, host: str) -> None:
    """Non-admins: no parent of another app's domain, and nothing under one (a tenant
    taking ``victim-corp.com`` while another holds ``www.victim-corp.com``, or the
    reverse), unless the key may use that app too."""
    if key.is_admin:
        return
    store = platform.store
    for _host, other_app in store.related_domains(host.removeprefix("*.")):
        if other_app == app.name:
            continue
        other = store.find_app(other_app)
        if other is None or not store.can_access(key, other):
            raise Forbidden(f"{host} is too close to another app's domain (a parent of it"
                            " or under it): ask an admin")


def check_free(platform: Platform, key: Key, app: App, host: str) -> None:
    """Refuse a host that is another app's: its default host or one of its domains.

    Wildcards and names under the platform's own domain are for admins only: they would
    catch the traffic of apps that are stopped or not created yet.
    """
    check_not_the_server(platform, key, host)
    domain = platform.settings.domain
    suffix = "." + domain
    if host == default_host(platform.settings, app.name):
        raise Conflict(f"{host} is {app.name}'s own default host already")
    if host.startswith("*.") and host.count(".") < 2:
        raise InvalidInput(f"{host} is too wide: a wildcard needs at least two labels")
    if not key.is_admin and (host.startswith("*.") or host == domain
                             or host.endswith(suffix)):
        raise Forbidden(f"only admins may add {host}: wildcards and names under {domain}"
                        " are reserved")
    if host.endswith(suffix):
        label = host[: -len(suffix)]
        if "." not in label and platform.store.find_app(label) is not None:
            raise Conflict(f"{host} is taken by another app")
    owner = platform.store.domain_owner(host)
    if owner is not None and owner != app.name:
        raise Conflict(f"{host} is taken by another app")
    check_no_kin(platform, key, app, host)
