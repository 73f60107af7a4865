"""git:set (deploy branch), buildpacks:set, resources:set / resources."""

from __future__ import annotations

import re

from .. import names
from ..build import buildpacks
from ..errors import Forbidden, InvalidInput
from ..settings import Settings
from .registry import Context, command
from .spec import APP, Arg, Flag, Option, Parsed

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


@command("git:set", Arg("deploy-branch", literal=True), Arg("PATTERN"), app=APP)
def git_set(ctx: Context, p: Parsed) -> None:
    """Set the branch (or glob, e.g. release/*) whose pushes deploy."""
    app = p.the_app
    pattern = names.branch_pattern(p.required("PATTERN"))
    ctx.platform.store.update_app(app.name, deploy_branch=pattern)
    ctx.platform.store.record_event(ctx.key.name, "git:set", app.name, f"deploy-branch={pattern}")
    ctx.out(f"Setting deploy-branch of {app.name} to {pattern}... done")


@command("buildpacks:set", Arg("NAME", optional=True), Flag("--unset"), app=APP)
def buildpacks_set(ctx: Context, p: Parsed) -> None:
    """Force a buildpack (dockerfile, python, node, php, static) or go back to detection."""
    app = p.the_app
    name = p.arg("NAME")
    if (name is None) == (not p.flag("--unset")):
        raise InvalidInput("give a buildpack NAME or --unset")
    if name is None:
        ctx.platform.store.update_app(app.name, buildpack=None)
        ctx.platform.store.record_event(ctx.key.name, "buildpacks:set", app.name, "--unset")
        ctx.out(f"Buildpack of {app.name}: detected at each push")
        return
    if name not in buildpacks.KNOWN:
        raise InvalidInput(f"unknown buildpack {name!r}: one of {', '.join(buildpacks.KNOWN)}")
    ctx.platform.store.update_app(app.name, buildpack=name)
    ctx.platform.store.record_event(ctx.key.name, "buildpacks:set", app.name, name)
    ctx.out(f"Buildpack of {app.name}: {name} (from the next push)")


def parse_cpus(value: str) -> float:
    if not CPUS_RE.fullmatch(value):
        raise InvalidInput(f"--cpus takes a number such as 0.5, not {value!r}")
    cpus = float(value)
    if not 0 <= cpus <= 64:
        raise InvalidInput("--cpus must be between 0 (no limit) and 64")
    return cpus


@command("resources:set", Option("--process", "TYPE", aliases=("-p",)),
         Option("--memory", "256m", aliases=("-m",)), Option("--cpus", "0.5"), app=APP)
def resources_set(ctx: Context, p: Parsed) -> None:
    """Limit memory and CPUs of an app's containers, from its next release on.

    Non-admins stay at or below the admin's ceilings (``max_memory``/``max_cpus``, else
    ``default_memory``/``default_cpus``): ``0`` (no limit) is above any ceiling.
    """
    process = p.option("--process") or "*"
    memory = p.option("--memory")
    cpus = p.option("--cpus")
    app = p.the_app
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


@command("resources", Flag("--json"), app=APP)
def resources_show(ctx: Context, p: Parsed) -> None:
    """Show an app's resource limits."""
    as_json = p.flag("--json")
    app = p.the_app
    settings = ctx.platform.settings
    limits = {"*": (settings.default_memory, settings.default_cpus),
              **ctx.platform.store.resources(app.name)}
    if as_json:
        ctx.json({p: {"memory": m, "cpus": c} for p, (m, c) in limits.items()})
        return
    for process, (memory, cpus) in sorted(limits.items()):
        ctx.out(f"{'(all)' if process == '*' else process:12} memory {memory or 'unlimited':10}"
                f" cpus {cpus or 'unlimited'}")
