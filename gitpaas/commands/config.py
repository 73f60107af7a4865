"""config, config:get, config:set, config:unset.

A change makes a new release (the current image, the new config) under the app's lock;
the config is stored only once that release is live, so the store never disagrees with
what runs. Without a release yet, or with ``--no-restart``, the config is only stored.
"""

from __future__ import annotations

import base64
import binascii

from .. import names
from ..datastores import mask_secrets
from ..errors import InvalidInput, NotFound
from ..store import App
from .args import PAIR_RE, key_values
from .registry import Context, command
from .spec import APP, Arg, Flag, Parsed

JSON, ENCODED, NO_RESTART = Flag("--json"), Flag("--encoded"), Flag("--no-restart")


def parse_assignments(args: list[str], encoded: bool = False) -> dict[str, str]:
    """``["K=V", ...]`` -> ``{K: V}`` (``args.key_values``); keys are validated, values
    kept exactly (base64 ones decoded if ``encoded``)."""
    return {names.config_key(key): decode_value(value) if encoded else value
            for key, value in key_values(args)}


def decode_value(value: str) -> str:
    """A base64 value (``--encoded``) as text; may hold newlines."""
    try:
        return base64.b64decode(value.encode("ascii"), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError) as exc:
        raise InvalidInput(f"not base64 of UTF-8 text: {value!r}") from exc


def encode_value(value: str) -> str:
    return base64.b64encode(value.encode("utf-8")).decode("ascii")


def key_list(keys: list[str]) -> str:
    """``A`` or ``A, B`` (as Heroku prints them)."""
    return ", ".join(keys)


@command("config", Flag("--reveal"), JSON, ENCODED, app=APP)
def config_list(ctx: Context, p: Parsed) -> None:
    """Show an app's config vars (a datastore's password masked unless --reveal)."""
    app = p.the_app
    config = ctx.platform.store.get_config(app.name)
    if not p.flag("--reveal"):
        config = masked(ctx, app, config)
    if p.flag("--encoded"):
        config = {k: encode_value(v) for k, v in config.items()}
    if p.flag("--json"):
        ctx.json(config)
        return
    ctx.out(f"=== {app.name} Config Vars")
    width = max((len(k) for k in config), default=0) + 1
    for key, value in config.items():
        ctx.out(f"{(key + ':').ljust(width)} {value}")


def masked(ctx: Context, app: App, config: dict[str, str]) -> dict[str, str]:
    """``config`` with the secrets of the app's datastores masked, as ``mysql:info``
    shows them (the keys a datastore set; a password the user set stays as it is)."""
    if not ctx.platform.store.datastores(app.name):
        return config
    return mask_secrets(config)


@command("config:get", Arg("KEY"), ENCODED, app=APP)
def config_get(ctx: Context, p: Parsed) -> None:
    """Print one config var's value exactly as set."""
    app = p.the_app
    key = names.config_key(p.required("KEY"))
    config = ctx.platform.store.get_config(app.name)
    if key not in config:
        raise NotFound(f"{app.name} has no config var {key}")
    ctx.out(encode_value(config[key]) if p.flag("--encoded") else config[key])


@command("config:set", Arg("KEY=VALUE", many=True, pattern=PAIR_RE), NO_RESTART, ENCODED,
         app=APP)
def config_set(ctx: Context, p: Parsed) -> None:
    """Set config vars and restart the app with them (a new release)."""
    values = parse_assignments(p.many("KEY=VALUE"), p.flag("--encoded"))
    change(ctx, p.the_app, values, [], p.flag("--no-restart"), f"Set {', '.join(values)}",
           "Setting")


@command("config:unset", Arg("KEY", many=True), NO_RESTART, app=APP)
def config_unset(ctx: Context, p: Parsed) -> None:
    """Remove config vars and restart the app without them (a new release)."""
    keys = [names.config_key(k) for k in p.many("KEY")]
    change(ctx, p.the_app, {}, keys, p.flag("--no-restart"), f"Unset {', '.join(keys)}",
           "Unsetting")


def change(ctx: Context, app: App, values: dict[str, str], unset: list[str],
           no_restart: bool, description: str, verb: str) -> None:
    """Apply a config change under the app's lock (see ``apply_change``)."""
    with ctx.platform.lock(app.name, f"config change by {ctx.key.name}", ctx.err):
        apply_change(ctx, app, values, unset, no_restart, description, verb)


def apply_change(ctx: Context, app: App, values: dict[str, str], unset: list[str],
                 no_restart: bool, description: str, verb: str) -> None:
    """Store a config change, and roll out a new release unless told not to.

    The caller holds the app's lock. The config is stored only once the new release is
    live; a failed roll-out raises and changes nothing.
    """
    platform = ctx.platform
    store = platform.store
    changed = key_list(list(values) or unset)
    config = store.get_config(app.name)
    missing = [k for k in unset if k not in config]
    if missing:
        raise NotFound(f"{app.name} has no config var {key_list(missing)}")
    new = {k: v for k, v in config.items() if k not in unset}
    new.update(values)
    current = store.current_release(app.name)
    if current is None or no_restart:
        store.set_config(app.name, values, unset)
        store.record_event(ctx.key.name, "config", app.name, description)
        why = "no release yet" if current is None else "--no-restart"
        ctx.out(f"{verb} {changed} on {app.name}... done"
                f" (stored; {why}: it applies at the next deploy or restart)")
        return
    ctx.write_out(f"{verb} {changed} and restarting {app.name}... ")
    progress: list[str] = []
    try:
        release = platform.deployer.deploy_release(app.name, current, new, description,
                                                   ctx.key.name, progress.append)
    except BaseException:
        ctx.out("failed")
        raise
    store.set_config(app.name, values, unset)
    store.record_event(ctx.key.name, "config", app.name, description)
    ctx.out(f"done, v{release.version}")
