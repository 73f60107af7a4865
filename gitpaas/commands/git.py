"""git:set (deploy branch), buildpacks:set, resources:set / resources."""

from __future__ import annotations

import re

from .. import names
from ..build import buildpacks
from ..errors import Forbidden, InvalidInput
from ..settings import Settings
from .args import no_more, pop_flag, pop_option, take_app
from .registry import Context, command

MEMORY_RE = re.compile(r"[1-9][0-9]{0,5}[kmg]")
UNITS = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
CPUS_RE = re.compile(r"[0-9]{1,2}(\.[0-9]{1,3})?|\.[0-9]{1,3}")


def memory_bytes(size: str) -> int:
    """``256m`` -> 268435456 (a size MEMORY_RE accepts)."""
    return int(size[:-1]) * UNITS[size[-1]]


def ceilings(settings: Settings) -> tuple[str, float]:
    """The most memory and CPUs a non-admin may give a process ('' / 0: no ceiling)."""
    return (settings.max_memory or settings.default_memory).lower(), \
        settings.max_cpus or settings.default_cpus


def check_ceilings(memory: str, cpus: float, settings: Settings) -> None:
    """Refuse (non-admins) ``memory`` or ``cpus`` above the admin's ceilings."""
    max_mem, max_cpus = ceilings(settings)
    if max_mem and (not memory or memory_bytes(memory) > memory_bytes(max_mem)):
        raise Forbidden(f"--memory {memory or 'unlimited'} is above the ceiling of {max_mem}"
                        " (an admin sets max_memory)")
    if max_cpus and (not cpus or cpus > max_cpus):
        raise Forbidden(f"--cpus {cpus or 'unlimited'} is above the ceiling of {max_cpus:g}"
                        " (an admin sets max_cpus)")


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
    if not CPUS_RE.fullmatch(value):
        raise InvalidInput(f"--cpus takes a number such as 0.5, not {value!r}")
    cpus = float(value)
    if not 0 <= cpus <= 64:
        raise InvalidInput("--cpus must be between 0 (no limit) and 64")
    return cpus


@command("resources:set",
         "resources:set [APP] [--process TYPE] [--memory 256m] [--cpus 0.5]")
def resources_set(ctx: Context, args: list[str]) -> None:
    """Limit memory and CPUs of an app's containers, from its next release on.

    Non-admins stay at or below the admin's ceilings (``max_memory``/``max_cpus``, else
    ``default_memory``/``default_cpus``): ``0`` (no limit) is above any ceiling.
    """
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
    if not ctx.key.is_admin:
        check_ceilings(new_mem, new_cpus, ctx.platform.settings)
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
