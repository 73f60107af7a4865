"""apps, apps:create, apps:info, apps:destroy (the doing: ``services.apps``)."""

from __future__ import annotations

import time

from ..addresses import app_url, git_remote
from ..services.apps import Apps
from .registry import Context, command
from .spec import APP, Arg, Flag, Option, Parsed

JSON = Flag("--json")


def fmt_time(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts)) if ts else "-"


@command("apps", JSON)
def apps_list(ctx: Context, p: Parsed) -> None:
    """List the apps you can reach."""
    apps = Apps(ctx.platform, ctx.key).reachable()
    if ctx.json_or_title(p, [{"name": a.name, "owner": a.owner, "release": a.current_version,
                              "deploy_branch": a.deploy_branch} for a in apps]):
        return
    if not apps:
        ctx.out("You have no apps. Push one:"
                f" git push {git_remote(ctx.platform.settings, 'APP')} main")
        return
    for a in apps:
        release = f"v{a.current_version}" if a.current_version else "(not deployed)"
        ctx.out(f"{a.name:30}  {release:15}  owner {a.owner}")


@command("apps:create", Arg("APP"))
def apps_create(ctx: Context, p: Parsed) -> None:
    """Create an app (a push creates it too)."""
    app = Apps(ctx.platform, ctx.key).create(p.required("APP"))
    settings = ctx.platform.settings
    ctx.out(f"Creating {app.name}... done, {app_url(settings, app.name)}")
    ctx.out(f"Push to it: git push {git_remote(settings, app.name)} main")


@command("apps:info", JSON, app=APP)
def apps_info(ctx: Context, p: Parsed) -> None:
    """Show an app's owner, release, hosts and processes."""
    info = Apps(ctx.platform, ctx.key).info(p.the_app.name)
    info["created_at"] = fmt_time(info["created_at"])
    if ctx.json_or_title(p, info, info["name"]):
        return
    for k, v in info.items():
        if isinstance(v, dict):
            v = " ".join(f"{p}={n}" for p, n in v.items())
        elif isinstance(v, list):
            v = " ".join(v)
        ctx.out(f"{k.replace('_', ' ').title() + ':':16}{v if v is not None else '-'}")


@command("apps:destroy", Option("--confirm", "APP", required=True), app=APP)
def apps_destroy(ctx: Context, p: Parsed) -> None:
    """Remove an app: containers, images, routes, repo, config (owner or admin only)."""
    name = p.the_app.name
    Apps(ctx.platform, ctx.key).destroy(name, p.option("--confirm"), ctx.progress)
    ctx.out(f"Destroying {name}... done")
