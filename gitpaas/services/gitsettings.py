"""The app settings a push reads: the deploy branch, a forced buildpack, and the memory
and CPU limits of the app's containers (``git:set``, ``buildpacks:set``,
``resources:set``). Changes run under the app's lock and are recorded; they apply from
the next push or release.
"""

from __future__ import annotations

import re

from .. import names
from ..build import buildpacks
from ..errors import Forbidden, InvalidInput
from ..settings import Settings
from .access import Service

MEMORY_RE = re.compile(r"[1-9][0-9]{0,5}[kmg]")
UNITS = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
CPUS_RE = re.compile(r"[0-9]{1,2}(\.[0-9]{1,3})?|\.[0-9]{1,3}")
Limits = dict[str, tuple[str, float]]  # process type ("*": all) -> (memory, cpus)


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


def parse_cpus(value: str) -> float:
    if not CPUS_RE.fullmatch(value):
        raise InvalidInput(f"--cpus takes a number such as 0.5, not {value!r}")
    cpus = float(value)
    if not 0 <= cpus <= 64:
        raise InvalidInput("--cpus must be between 0 (no limit) and 64")
    return cpus


class AppSettings(Service):
    """What a key sets of its apps' builds and limits (access checked first)."""

    def set_deploy_branch(self, name: str, pattern: str) -> str:
        """Pushes to branches matching ``pattern`` (a glob) deploy; the checked pattern."""
        with self.access.change(name, "git:set") as change:
            pattern = names.branch_pattern(pattern)
            self.platform.store.update_app(change.app.name, deploy_branch=pattern)
            change.detail = f"deploy-branch={pattern}"
        return pattern

    def set_buildpack(self, name: str, buildpack: str | None) -> None:
        """Force ``buildpack`` from the next push; None: detect it at each push."""
        with self.access.change(name, "buildpacks:set") as change:
            if buildpack is not None and buildpack not in buildpacks.KNOWN:
                raise InvalidInput(f"unknown buildpack {buildpack!r}: one of"
                                   f" {', '.join(buildpacks.KNOWN)}")
            self.platform.store.update_app(change.app.name, buildpack=buildpack)
            change.detail = buildpack or "--unset"

    def resources(self, name: str) -> Limits:
        """The app's limits by process type, ``*`` (the defaults) first."""
        app = self.access.app(name)
        settings = self.platform.settings
        return {"*": (settings.default_memory, settings.default_cpus),
                **self.platform.store.resources(app.name)}

    def set_resources(self, name: str, process: str, memory: str | None,
                      cpus: str | None) -> tuple[str, float]:
        """Limit the memory and/or CPUs of ``process`` (``*``: all) from the next release;
        the new (memory, cpus). Non-admins stay at or below the admin's ceilings."""
        settings = self.platform.settings
        with self.access.change(name, "resources:set") as change:
            app = change.app
            if process != "*":
                names.process_type(process)
            if memory is None and cpus is None:
                raise InvalidInput("give --memory and/or --cpus")
            current_mem, current_cpus = self.platform.store.resources(app.name).get(
                process, (settings.default_memory, settings.default_cpus))
            if memory is not None and memory != "0" \
                    and not MEMORY_RE.fullmatch(memory.lower()):
                raise InvalidInput("--memory takes a size such as 256m or 1g (0 for no limit)")
            new_mem = current_mem if memory is None else ("" if memory == "0" else memory.lower())
            new_cpus = current_cpus if cpus is None else parse_cpus(cpus)
            if not self.key.is_admin:
                check_ceilings(new_mem, new_cpus, settings)
            self.platform.store.set_resources(app.name, process, new_mem, new_cpus)
            change.detail = f"{process} memory={new_mem} cpus={new_cpus}"
        return new_mem, new_cpus
