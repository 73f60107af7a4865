"""domains, domains:add, domains:remove: extra host names beside ``<app>.<domain>``."""

from __future__ import annotations

import socket

from .. import names
from ..errors import Conflict, Forbidden, InvalidInput
from ..settings import Settings
from ..store import App
from .args import no_more, pop_flag, take_app, take_one
from .registry import Context, command


def default_host(ctx: Context, app: str) -> str:
    return f"{app}.{ctx.platform.settings.domain}"


def server_names(settings: Settings) -> set[str]:
    """The names the server itself answers at: the domain, ``server_names`` and the
    machine's host name."""
    found = {settings.domain, socket.gethostname().lower()}
    found |= {n.strip().lower().rstrip(".") for n in settings.server_names.split(",")}
    return {n for n in found if n}


def check_not_the_server(ctx: Context, host: str) -> None:
    """Non-admins: no IP literal (any notation), ``localhost``, nor the server's names."""
    if ctx.key.is_admin:
        return
    if names.is_ip_literal(host):
        raise Forbidden(f"only admins may add {host}: an IP address is the server's own")
    if names.is_local_name(host) or host.removeprefix("*.") in server_names(
            ctx.platform.settings):
        raise Forbidden(f"only admins may add {host}: it is one of the server's own names")


def check_no_kin(ctx: Context, app: App, host: str) -> None:
    """Non-admins: no parent of another app's domain, and nothing under one (a tenant
    taking ``victim-corp.com`` while another holds ``www.victim-corp.com``, or the
    reverse), unless the key may use that app too."""
    if ctx.key.is_admin:
        return
    store = ctx.platform.store
    for _host, other_app in store.related_domains(host.removeprefix("*.")):
        if other_app == app.name:
            continue
        other = store.find_app(other_app)
        if other is None or not store.can_access(ctx.key, other):
            raise Forbidden(f"{host} is too close to another app's domain (a parent of it"
                            " or under it): ask an admin")


def check_free(ctx: Context, app: App, host: str) -> None:
    """Refuse a host that is another app's: its default host or one of its domains.

    Wildcards and names under the platform's own domain are for admins only: they would
    catch the traffic of apps that are stopped or not created yet.
    """
    check_not_the_server(ctx, host)
    domain = ctx.platform.settings.domain
    suffix = "." + domain
    if host == default_host(ctx, app.name):
        raise Conflict(f"{host} is {app.name}'s own default host already")
    if host.startswith("*.") and host.count(".") < 2:
        raise InvalidInput(f"{host} is too wide: a wildcard needs at least two labels")
    if not ctx.key.is_admin and (host.startswith("*.") or host == domain
                                 or host.endswith(suffix)):
        raise Forbidden(f"only admins may add {host}: wildcards and names under {domain}"
                        " are reserved")
    if host.endswith(suffix):
        label = host[: -len(suffix)]
        if "." not in label and ctx.platform.store.find_app(label) is not None:
            raise Conflict(f"{host} is taken by another app")
    owner = ctx.platform.store.domain_owner(host)
    if owner is not None and owner != app.name:
        raise Conflict(f"{host} is taken by another app")
    check_no_kin(ctx, app, host)



@command("domains", "domains [APP] [--json]")
def domains_list(ctx: Context, args: list[str]) -> None:
    """List the host names an app answers at."""
    as_json = pop_flag(args, "--json")
    app = take_app(ctx, args, only_positional=True)
    no_more(args)
    extra = ctx.platform.store.domains(app.name)
    if as_json:
        ctx.json({"default": default_host(ctx, app.name), "domains": extra})
        return
    ctx.out(f"=== {app.name} Domains")
    ctx.out(f"{default_host(ctx, app.name)}  (default)")
    for host in extra:
        ctx.out(host)


@command("domains:add", "domains:add [APP] HOST")
def domains_add(ctx: Context, args: list[str]) -> None:
    """Make the app answer at HOST too (routes are updated at once)."""
    app = take_app(ctx, args, rest=1)
    host = take_one(args, "domains:add [APP] HOST", names.hostname)
    platform = ctx.platform
    with platform.lock(app.name, f"domains:add by {ctx.key.name}", ctx.err):
        check_free(ctx, app, host)
        platform.store.add_domain(app.name, host)
        frontend = platform.routes.get(default_host(ctx, app.name))
        if len(frontend) > 1:
            platform.routes.swap(app.name, [host], frontend[1:])
        platform.store.record_event(ctx.key.name, "domains:add", app.name, host)
    platform.certs.request(app.name)  # a certificate in the background, if ACME is on
    ctx.out(f"Adding {host} to {app.name}... done")


@command("domains:remove", "domains:remove [APP] HOST")
def domains_remove(ctx: Context, args: list[str]) -> None:
    """Stop answering at HOST (its route is removed at once)."""
    app = take_app(ctx, args, rest=1)
    host = take_one(args, "domains:remove [APP] HOST", names.hostname)
    platform = ctx.platform
    with platform.lock(app.name, f"domains:remove by {ctx.key.name}", ctx.err):
        platform.store.remove_domain(app.name, host)
        platform.routes.remove([host])
        platform.certs.forget([host])
        platform.store.record_event(ctx.key.name, "domains:remove", app.name, host)
    ctx.out(f"Removing {host} from {app.name}... done")
