"""keys, keys:add, keys:remove (admins; an app's owner for the app's deploy keys)."""

from __future__ import annotations

from pathlib import Path

from .. import names, sshkeys
from ..errors import Forbidden, InvalidInput
from ..services.access import Access
from .registry import Context, command
from .spec import Arg, Flag, Option, Parsed

MAX_KEY_BYTES = 16 * 1024


@command("keys", Flag("--json"), admin_only=True)
def keys_list(ctx: Context, p: Parsed) -> None:
    """List the registered SSH keys."""
    as_json = p.flag("--json")
    keys = ctx.platform.store.list_keys()
    if as_json:
        ctx.json([{"name": k.name, "fingerprint": k.fingerprint, "admin": k.is_admin,
                   "deploy_app": k.deploy_app} for k in keys])
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
    deploy_only = p.option("--deploy-only")
    if deploy_only is not None:
        deploy_only = Access(ctx.platform, ctx.key).owned(deploy_only,
                                                          "add a deploy key to it").name
    else:
        ctx.require_admin()
    name = names.key_name(p.required("NAME"))
    source = p.arg("FILE|-") or "-"
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
    key = sshkeys.parse(data.decode("utf-8", "replace"))
    added = ctx.platform.store.add_key(name, key.fingerprint, key.line, deploy_only)
    ctx.platform.store.record_event(ctx.key.name, "keys:add", deploy_only,
                                    f"{name} (deploy key)" if deploy_only else name)
    role = " as admin" if added.is_admin else (f" as a deploy key of {deploy_only}"
                                                if deploy_only else "")
    ctx.out(f"Added key {name} ({key.fingerprint}){role}")


def require_deploy_key_owner(ctx: Context, name: str) -> None:
    """A non-admin may remove only a deploy key of an app it owns; any other key name,
    existing or not, gets the same refusal (names of others' keys stay unknown)."""
    store = ctx.platform.store
    target = next((k for k in store.list_keys() if k.name == name), None)
    app = store.find_app(target.deploy_app) if target and target.deploy_app else None
    if app is None or app.owner != ctx.key.name:
        raise Forbidden("only admins, or the owner of a deploy key's app, may remove a key")


@command("keys:remove", Arg("NAME"))
def keys_remove(ctx: Context, p: Parsed) -> None:
    """Remove a registered key (the apps it owned pass to you).

    Admins remove any key; an app's owner removes the app's deploy keys.
    """
    name = p.required("NAME")
    if name == ctx.key.name:
        raise InvalidInput("you cannot remove the key you are using")
    if not ctx.key.is_admin:
        require_deploy_key_owner(ctx, names.key_name(name))
    owned = ctx.platform.store.remove_key(name, ctx.key.name)
    ctx.platform.store.record_event(ctx.key.name, "keys:remove", None, name)
    ctx.out(f"Removed key {name}")
    if owned:
        ctx.out(f"Apps it owned now belong to {ctx.key.name}: {', '.join(owned)}")
