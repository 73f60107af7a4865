"""git:set (deploy branch), buildpacks:set, resources:set / resources (the doing:
``services.gitsettings``)."""

from __future__ import annotations

from ..errors import InvalidInput
from ..services.gitsettings import AppSettings
from .registry import Context, command
from .spec import APP, Arg, Flag, Option, Parsed


@command("git:set", Arg("deploy-branch", literal=True), Arg("PATTERN"), app=APP)
def git_set(ctx: Context, p: Parsed) -> None:
    """Set the branch (or glob, e.g. release/*) whose pushes deploy."""
    name = p.the_app.name
    pattern = AppSettings(ctx.platform, ctx.key, ctx.err).set_deploy_branch(
        name, p.required("PATTERN"))
    ctx.out(f"Setting deploy-branch of {name} to {pattern}... done")


@command("buildpacks:set", Arg("NAME", optional=True), Flag("--unset"), app=APP)
def buildpacks_set(ctx: Context, p: Parsed) -> None:
    """Force a buildpack (dockerfile, python, node, php, static) or go back to detection."""
    app = p.the_app.name
    name = p.arg("NAME")
    if (name is None) == (not p.flag("--unset")):
        raise InvalidInput("give a buildpack NAME or --unset")
    AppSettings(ctx.platform, ctx.key, ctx.err).set_buildpack(app, name)
    if name is None:
        ctx.out(f"Buildpack of {app}: detected at each push")
    else:
        ctx.out(f"Buildpack of {app}: {name} (from the next push)")


@command("resources:set", Option("--process", "TYPE", aliases=("-p",)),
         Option("--memory", "256m", aliases=("-m",)), Option("--cpus", "0.5"), app=APP)
def resources_set(ctx: Context, p: Parsed) -> None:
    """Limit memory and CPUs of an app's containers, from its next release on.

    Non-admins stay at or below the admin's ceilings (``max_memory``/``max_cpus``, else
    ``default_memory``/``default_cpus``): ``0`` (no limit) is above any ceiling.
    """
    process = p.option("--process") or "*"
    name = p.the_app.name
    new_mem, new_cpus = AppSettings(ctx.platform, ctx.key, ctx.err).set_resources(
        name, process, p.option("--memory"), p.option("--cpus"))
    ctx.out(f"Resources of {name} ({'all processes' if process == '*' else process}):"
            f" memory {new_mem or 'unlimited'}, cpus {new_cpus or 'unlimited'}"
            " (from the next release)")


@command("resources", Flag("--json"), app=APP)
def resources_show(ctx: Context, p: Parsed) -> None:
    """Show an app's resource limits."""
    limits = AppSettings(ctx.platform, ctx.key).resources(p.the_app.name)
    if ctx.json_or_title(p, {proc: {"memory": m, "cpus": c} for proc, (m, c) in limits.items()}):
        return
    for process, (memory, cpus) in sorted(limits.items()):
        ctx.out(f"{'(all)' if process == '*' else process:12} memory {memory or 'unlimited':10}"
                f" cpus {cpus or 'unlimited'}")
