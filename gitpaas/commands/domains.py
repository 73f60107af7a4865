"""domains, domains:add, domains:remove: extra host names beside ``<app>.<domain>``
(the policy: ``services.domains``)."""

from __future__ import annotations

from ..services.apps import Apps
from .registry import Context, command
from .spec import APP, Arg, Flag, Parsed


@command("domains", Flag("--json"), app=APP)
def domains_list(ctx: Context, p: Parsed) -> None:
    """List the host names an app answers at."""
    name = p.the_app.name
    default, extra = Apps(ctx.platform, ctx.key).domains(name)
    if ctx.json_or_title(p, {"default": default, "domains": extra}, f"{name} Domains"):
        return
    ctx.out(f"{default}  (default)")
    for host in extra:
        ctx.out(host)


@command("domains:add", Arg("HOST"), app=APP)
def domains_add(ctx: Context, p: Parsed) -> None:
    """Make the app answer at HOST too (routes are updated at once)."""
    name, host = p.the_app.name, p.required("HOST")
    Apps(ctx.platform, ctx.key, ctx.err).add_domain(name, host)
    ctx.out(f"Adding {host} to {name}... done")


@command("domains:remove", Arg("HOST"), app=APP)
def domains_remove(ctx: Context, p: Parsed) -> None:
    """Stop answering at HOST (its route is removed at once)."""
    name, host = p.the_app.name, p.required("HOST")
    Apps(ctx.platform, ctx.key, ctx.err).remove_domain(name, host)
    ctx.out(f"Removing {host} from {name}... done")
