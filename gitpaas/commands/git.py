"""git:set (deploy branch), buildpacks:set, resources:set / resources."""

from __future__ import annotations

import re

from .. import names
from ..build import buildpacks
from ..errors import InvalidInput
from .args import no_more, pop_flag, pop_option, take_app
from .registry import Context, command

MEMORY_RE = re.compile(r"[1-9][0-9]{0,5}[kmg]")


@command("git:set", "git:set [APP] deploy-branch PATTERN")
def git_set(ctx: Context, args: list[str]) -> None:
    """Set the branch (or glob, e.g. release/*) whose pushes deploy."""
    app = take_app(ctx, args, rest=2)
    if len(args) != 2 or args[0] != "deploy-branch":
        raise InvalidInput("usage: git:set [APP] deploy-branch PATTERN")
    pattern = names.branch_pattern(args[1])
    ctx.platform.store.update_app(app.name, deploy_branch=pattern)
    ctx.platform.store.record_event(ctx.key.name, "git:set", app.name, f"deploy-branch={pattern}")
    ctx.out(f"Setting deploy-branch of {app.name} to {pattern}... done")


@command("buildpacks:set", "buildpacks:set [APP] NAME|--unset")
def buildpacks_set(ctx: Context, args: list[str]) -> None:
    """Force a buildpack (dockerfile, python, node, php, static) or go back to detection."""
    unset = pop_flag(args, "--unset")
    app = take_app(ctx, args)
    if unset:
        no_more(args)
        ctx.platform.store.update_app(app.name, buildpack=None)
        ctx.platform.store.record_event(ctx.key.name, "buildpacks:set", app.name, "--unset")
        ctx.out(f"Buildpack of {app.name}: detected at each push")
        return
    if len(args) != 1:
        raise InvalidInput("usage: buildpacks:set [APP] NAME|--unset")
    if args[0] not in buildpacks.KNOWN:
        raise InvalidInput(f"unknown buildpack {args[0]!r}: one of {', '.join(buildpacks.KNOWN)}")
    ctx.platform.store.update_app(app.name, buildpack=args[0])
    ctx.platform.store.record_event(ctx.key.name, "buildpacks:set", app.name, args[0])
    ctx.out(f"Buildpack of {app.name}: {args[0]} (from the next push)")


def parse_cpus(value: str) -> float:
    try:
        cpus = float(value)
    except ValueError:
        raise InvalidInput(f"--cpus takes a number such as 0.5, not {value!r}") from None
    if not 0 <= cpus <= 64:
        raise InvalidInput("--cpus must be between 0 (no limit) and 64")
    return cpus


@command("resources:set",
         "resources:set [APP] [--process TYPE] [--memory 256m] [--cpus 0.5]")
def resources_set(ctx: Context, args: list[str]) -> None:
    """Limit memory and CPUs of an app's containers, from its next release on."""
    process = pop_option(args, "--process", "-p") or "*"
    memory = pop_option(args, "--memory", "-m")
    cpus = pop_option(args, "--cpus")
    app = take_app(ctx, args)
    no_more(args)
    if process != "*":
        names.process_type(process)
    if memory is None and cpus is None:
        raise InvalidInput("give --memory and/or --cpus")
    current_mem, current_cpus = ctx.platform.store.resources(app.name).get(
        process, (ctx.platform.settings.default_memory, ctx.platform.settings.default_cpus))
    if memory is not None and memory != "0" and not MEMORY_RE.fullmatch(memory.lower()):
        raise InvalidInput("--memory takes a size such as 256m or 1g (0 for no limit)")
    new_mem = current_mem if memory is None else ("" if memory == "0" else memory.lower())
    new_cpus = current_cpus if cpus is None else parse_cpus(cpus)
    ctx.platform.store.set_resources(app.name, process, new_mem, new_cpus)
    ctx.platform.store.record_event(ctx.key.name, "resources:set", app.name,
                                    f"{process} memory={new_mem} cpus={new_cpus}")
    ctx.out(f"Resources of {app.name} ({'all processes' if process == '*' else process}):"
            f" memory {new_mem or 'unlimited'}, cpus {new_cpus or 'unlimited'}"
            " (from the next release)")


@command("resources", "resources [APP] [--json]")
def resources_show(ctx: Context, args: list[str]) -> None:
    """Show an app's resource limits."""
    as_json = pop_flag(args, "--json")
    app = take_app(ctx, args, only_positional=True)
    no_more(args)
    settings = ctx.platform.settings
    limits = {"*": (settings.default_memory, settings.default_cpus),
              **ctx.platform.store.resources(app.name)}
    if as_json:
        ctx.json({p: {"memory": m, "cpus": c} for p, (m, c) in limits.items()})
        return
    for process, (memory, cpus) in sorted(limits.items()):
        ctx.out(f"{'(all)' if process == '*' else process:12} memory {memory or 'unlimited':10}"
                f" cpus {cpus or 'unlimited'}")
