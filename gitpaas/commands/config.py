"""config, config:get, config:set, config:unset (the doing: ``services.config``).

A change makes a new release (the current image, the new config) under the app's lock;
the config is stored only once that release is live. Without a release yet, or with
``--no-restart``, the config is only stored.
"""

from __future__ import annotations

import base64
import binascii

from .. import names
from ..errors import InvalidInput
from ..services.config import Config
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


@command("config", Flag("--reveal"), JSON, ENCODED, app=APP)
def config_list(ctx: Context, p: Parsed) -> None:
    """Show an app's config vars (a datastore's password masked unless --reveal)."""
    name = p.the_app.name
    config = Config(ctx.platform, ctx.key).values(name, p.flag("--reveal"))
    if p.flag("--encoded"):
        config = {k: encode_value(v) for k, v in config.items()}
    if ctx.json_or_title(p, config, f"{name} Config Vars"):
        return
    width = max((len(k) for k in config), default=0) + 1
    for key, value in config.items():
        ctx.out(f"{(key + ':').ljust(width)} {value}")


@command("config:get", Arg("KEY"), ENCODED, app=APP)
def config_get(ctx: Context, p: Parsed) -> None:
    """Print one config var's value exactly as set."""
    key = names.config_key(p.required("KEY"))
    value = Config(ctx.platform, ctx.key).get(p.the_app.name, key)
    ctx.out(encode_value(value) if p.flag("--encoded") else value)


@command("config:set", Arg("KEY=VALUE", many=True, pattern=PAIR_RE), NO_RESTART, ENCODED,
         app=APP)
def config_set(ctx: Context, p: Parsed) -> None:
    """Set config vars and restart the app with them (a new release)."""
    values = parse_assignments(p.many("KEY=VALUE"), p.flag("--encoded"))
    Config(ctx.platform, ctx.key, ctx.err).change(
        p.the_app.name, values, [], p.flag("--no-restart"), f"Set {', '.join(values)}",
        "Setting", ctx.write_out)


@command("config:unset", Arg("KEY", many=True), NO_RESTART, app=APP)
def config_unset(ctx: Context, p: Parsed) -> None:
    """Remove config vars and restart the app without them (a new release)."""
    keys = [names.config_key(k) for k in p.many("KEY")]
    Config(ctx.platform, ctx.key, ctx.err).change(
        p.the_app.name, {}, keys, p.flag("--no-restart"), f"Unset {', '.join(keys)}",
        "Unsetting", ctx.write_out)
