"""Named points of the pipeline where a test can pause a deploy, to kill the server there.

``GITPAAS_FAULT_PAUSE=<stage>[:<seconds>]`` (read from the environment at each point, never
from the settings file) makes the deploy log ``fault point <stage> reached`` and sleep.
Stages, in order: ``receive`` (ref updates read, pack not yet), ``build`` (before docker
build), ``start`` (release recorded, nothing started), ``check`` (containers started, not
checked), ``swap`` (routes swapped, release not yet marked live), ``retire`` (new release
live, old containers not yet removed). Unset, each point costs one dictionary lookup.
"""

from __future__ import annotations

import logging
import os
import time

log = logging.getLogger(__name__)
STAGES = ("receive", "build", "start", "check", "swap", "retire")
ENV = "GITPAAS_FAULT_PAUSE"


def point(stage: str) -> None:
    """Pause here if the environment asks for ``stage``."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    name, _, seconds = spec.partition(":")
    if name != stage:
        return
    log.warning("fault point %s reached: pausing", stage)
    for handler in logging.getLogger().handlers:
        handler.flush()
    time.sleep(float(seconds or 60))
