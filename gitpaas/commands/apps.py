"""apps, apps:create, apps:info, apps:destroy."""

from __future__ import annotations

import time

from .. import names
from ..addresses import app_url, git_remote
from ..errors import InvalidInput
from ..git import repos
from .args import no_more, pop_flag, reachable_apps, take_app, take_destroy_target
from .registry import Context, command


def fmt_time(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts)) if ts else "-"


@command("apps", "apps [--json]")
def apps_list(ctx: Context, args: list[str]) -> None:
    """List the apps you can reach."""
    as_json = pop_flag(args, "--json")
    no_more(args)
    apps = reachable_apps(ctx)
    if as_json:
        ctx.json([{"name": a.name, "owner": a.owner, "release": a.current_version,
                   "deploy_branch": a.deploy_branch} for a in apps])
        return
    if not apps:
        ctx.out("You have no apps. Push one:"
                f" git push {git_remote(ctx.platform.settings, 'APP')} main")
        return
    for a in apps:
        release = f"v{a.current_version}" if a.current_version else "(not deployed)"
        ctx.out(f"{a.name:30}  {release:15}  owner {a.owner}")


@command("apps:create", "apps:create APP")
def apps_create(ctx: Context, args: list[str]) -> None:
    """Create an app (a push creates it too)."""
    if len(args) != 1:
        raise InvalidInput("usage: apps:create APP")
    name = names.app_name(args[0])
    ctx.platform.store.create_app(name, ctx.key.name, ctx.platform.settings.deploy_branch,
                                  f"{name}.{ctx.platform.settings.domain}")
    ctx.platform.store.record_event(ctx.key.name, "apps:create", name)
    settings = ctx.platform.settings
    ctx.out(f"Creating {name}... done, {app_url(settings, name)}")
    ctx.out(f"Push to it: git push {git_remote(settings, name)} main")


@command("apps:info", "apps:info [APP] [--json]")
def apps_info(ctx: Context, args: list[str]) -> None:
    """Show an app's owner, release, hosts and processes."""
    as_json = pop_flag(args, "--json")
    app = take_app(ctx, args, only_positional=True)
    no_more(args)
    platform = ctx.platform
    info = {
        "name": app.name, "owner": app.owner, "release": app.current_version,
        "deploy_branch": app.deploy_branch, "created_at": fmt_time(app.created_at),
        "hosts": platform.deployer.hosts(app.name),
        "formation": platform.store.formation(app.name),
        "url": app_url(platform.settings, app.name),
        "git_url": git_remote(platform.settings, app.name),
    }
    if as_json:
        ctx.json(info)
        return
    ctx.out(f"=== {app.name}")
    for k, v in info.items():
        if isinstance(v, dict):
            v = " ".join(f"{p}={n}" for p, n in v.items())
        elif isinstance(v, list):
            v = " ".join(v)
        ctx.out(f"{k.replace('_', ' ').title() + ':':16}{v if v is not None else '-'}")


@command("apps:destroy", "apps:destroy [APP] --confirm APP")
def apps_destroy(ctx: Context, args: list[str]) -> None:
    """Remove an app: containers, images, routes, repo, config (owner or admin only)."""
    app = take_destroy_target(ctx, args, "destroy it", "destroys {app} and its data")
    platform = ctx.platform
    with platform.lock(app.name, f"apps:destroy by {ctx.key.name}"):
        ctx.out(f"-----> Destroying {app.name}")
        hosts = platform.deployer.hosts(app.name)
        platform.routes.remove(hosts)
        platform.certs.forget(hosts)
        platform.runtime.remove(platform.runtime.list(app.name), stop_timeout=5)
        platform.runtime.remove_network(app.name)
        for release in platform.store.list_releases(app.name, limit=100000):
            platform.deployer.builder.remove(release.image)
        from ..datastores import destroy_for_app

        destroy_for_app(platform, app.name)
        repos.remove_repo(platform.settings.repos_dir, app.name)
        platform.log_archive.remove(app.name)
        # Recorded first: the event belongs to this app, not to a later one of its name.
        platform.store.record_event(ctx.key.name, "apps:destroy", app.name)
        platform.store.delete_app(app.name)
        platform.deployer.run_post_destroy(app.name, ctx.key.name, ctx.progress)
    ctx.out(f"Destroying {app.name}... done")
