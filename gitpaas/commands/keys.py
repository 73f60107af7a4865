"""keys, keys:add, keys:remove (admins only)."""

from __future__ import annotations

from pathlib import Path

from .. import names, sshkeys
from ..errors import InvalidInput
from .args import no_more, pop_flag
from .registry import Context, command

MAX_KEY_BYTES = 16 * 1024


@command("keys", "keys [--json]", admin_only=True)
def keys_list(ctx: Context, args: list[str]) -> None:
    """List the registered SSH keys."""
    as_json = pop_flag(args, "--json")
    no_more(args)
    keys = ctx.platform.store.list_keys()
    if as_json:
        ctx.json([{"name": k.name, "fingerprint": k.fingerprint, "admin": k.is_admin}
                  for k in keys])
        return
    for k in keys:
        ctx.out(f"{k.name:20}  {k.fingerprint}{'  (admin)' if k.is_admin else ''}")


@command("keys:add", "keys:add NAME [FILE|-]   (the public key on stdin over ssh)",
         admin_only=True)
def keys_add(ctx: Context, args: list[str]) -> None:
    """Register a public key under NAME; the first key ever added is an admin."""
    if not args:
        raise InvalidInput("usage: keys:add NAME [FILE|-]")
    name = names.key_name(args.pop(0))
    source = args.pop(0) if args else "-"
    no_more(args)
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
    added = ctx.platform.store.add_key(name, key.fingerprint, key.line)
    ctx.platform.store.record_event(ctx.key.name, "keys:add", None, name)
    ctx.out(f"Added key {name} ({key.fingerprint}){' as admin' if added.is_admin else ''}")


@command("keys:remove", "keys:remove NAME", admin_only=True)
def keys_remove(ctx: Context, args: list[str]) -> None:
    """Remove a registered key (the apps it owned pass to you)."""
    if len(args) != 1:
        raise InvalidInput("usage: keys:remove NAME")
    if args[0] == ctx.key.name:
        raise InvalidInput("you cannot remove the key you are using")
    owned = ctx.platform.store.remove_key(args[0], ctx.key.name)
    ctx.platform.store.record_event(ctx.key.name, "keys:remove", None, args[0])
    ctx.out(f"Removed key {args[0]}")
    if owned:
        ctx.out(f"Apps it owned now belong to {ctx.key.name}: {', '.join(owned)}")
