"""keys, keys:add, keys:remove (admins; an app's owner for the app's deploy keys; the
doing: ``services.keys``)."""

from __future__ import annotations

from pathlib import Path

from ..errors import InvalidInput
from ..services.keys import Keys
from .registry import Context, command
from .spec import Arg, Flag, Option, Parsed

MAX_KEY_BYTES = 16 * 1024


@command("keys", Flag("--json"), admin_only=True)
def keys_list(ctx: Context, p: Parsed) -> None:
    """List the registered SSH keys."""
    keys = Keys(ctx.platform, ctx.key).all()
    if ctx.json_or_title(p, [{"name": k.name, "fingerprint": k.fingerprint,
                              "admin": k.is_admin, "deploy_app": k.deploy_app} for k in keys]):
        return
    for k in keys:
        role = "  (admin)" if k.is_admin else (f"  (deploy key of {k.deploy_app})"
                                                if k.deploy_app else "")
        ctx.out(f"{k.name:20}  {k.fingerprint}{role}")


@command("keys:add", Arg("NAME"), Arg("FILE|-", optional=True),
         Option("--deploy-only", "APP"), note="the public key on stdin over ssh")
def keys_add(ctx: Context, p: Parsed) -> None:
    """Register a public key under NAME; --deploy-only APP makes a deploy key of APP.

    Admins add any key (the first key ever added is an admin); an app's owner adds deploy
    keys of it: they may push to that app and read its releases and logs, nothing else.
    """
    source = p.arg("FILE|-") or "-"

    def read_key() -> str:
        if source != "-" and not ctx.is_local:
            raise InvalidInput("over ssh the public key comes on stdin: keys:add NAME < key.pub")
        if source == "-":
            data = ctx.stdin.read(MAX_KEY_BYTES + 1)
        else:
            try:
                data = Path(source).read_bytes()[: MAX_KEY_BYTES + 1]
            except OSError as exc:
                raise InvalidInput(f"cannot read {source}: {exc.strerror}") from exc
        if len(data) > MAX_KEY_BYTES:
            raise InvalidInput("that is too long for a public key")
        return data.decode("utf-8", "replace")

    name = p.required("NAME")
    added, fingerprint = Keys(ctx.platform, ctx.key).add(name, read_key,
                                                         p.option("--deploy-only"))
    role = " as admin" if added.is_admin else (f" as a deploy key of {added.deploy_app}"
                                                if added.deploy_app else "")
    ctx.out(f"Added key {added.name} ({fingerprint}){role}")


@command("keys:remove", Arg("NAME"))
def keys_remove(ctx: Context, p: Parsed) -> None:
    """Remove a registered key (the apps it owned pass to you).

    Admins remove any key; an app's owner removes the app's deploy keys.
    """
    name = p.required("NAME")
    owned = Keys(ctx.platform, ctx.key).remove(name)
    ctx.out(f"Removed key {name}")
    if owned:
        ctx.out(f"Apps it owned now belong to {ctx.key.name}: {', '.join(owned)}")
