"""certs, certs:add, certs:remove: the TLS certificates of an app's hosts (see docs/https.md)."""

from __future__ import annotations

from pathlib import Path

from .. import names
from ..edge.certstore import MAX_PEM_BYTES, HostState, covers, format_time, parse_bundle
from ..errors import InvalidInput, NotFound
from .args import no_more, pop_flag, positionals, take_app, take_one
from .registry import Context, command

ADD_USAGE = "certs:add [APP] [CRT KEY]   (over ssh: cat CRT KEY | ssh paas certs:add APP)"


@command("certs", "certs [APP] [--json]")
def certs_list(ctx: Context, args: list[str]) -> None:
    """Show each host's certificate: state, issuer, expiry, and why it failed."""
    as_json = pop_flag(args, "--json")
    app = take_app(ctx, args, only_positional=bool(args))
    no_more(args)
    reports = ctx.platform.certs.report(app.name)
    if as_json:
        ctx.json([r.as_json() for r in reports])
        return
    ctx.out(f"=== {app.name} Certificates")
    width = max(len(r.host) for r in reports)
    for r in reports:
        expires = format_time(r.expires) if r.expires else "-"
        issuer = f"{r.issuer}{' (own)' if r.source == 'own' else ''}" if r.issuer else "-"
        ctx.out(f"{r.host:{width}}  {r.status:8} {expires:20}  {issuer}".rstrip())
        if r.reason:
            ctx.out(f"{'':{width}}  {r.reason}")


def _read(ctx: Context, source: str) -> bytes:
    if source == "-":
        data = ctx.stdin.read(MAX_PEM_BYTES + 1)
    else:
        try:
            with Path(source).open("rb") as f:
                data = f.read(MAX_PEM_BYTES + 1)
        except OSError as exc:
            raise InvalidInput(f"cannot read {source}: {exc.strerror}") from exc
    if len(data) > MAX_PEM_BYTES:
        raise InvalidInput("that is too long for a certificate and its key")
    return data


@command("certs:add", ADD_USAGE)
def certs_add(ctx: Context, args: list[str]) -> None:
    """Install your own certificate (chain + key) for the app hosts it covers."""
    app = take_app(ctx, args, only_positional=len(positionals(args)) in (1, 3))
    if args and len(args) != 2:
        raise InvalidInput(f"usage: {ADD_USAGE}")
    crt, key = (args[0], args[1]) if args else ("-", "-")
    if (crt != "-" or key != "-") and not ctx.is_local:
        raise InvalidInput("over ssh the certificate and key come on stdin:"
                           f" cat CRT KEY | ssh paas certs:add {app.name}")
    if crt == "-" and key == "-":
        cert_data = key_data = _read(ctx, "-")
    else:
        cert_data, key_data = _read(ctx, crt), _read(ctx, key)
    bundle = parse_bundle(cert_data, key_data)
    platform = ctx.platform
    with platform.lock(app.name, f"certs:add by {ctx.key.name}", ctx.err):
        hosts = [h for h in platform.certs.hosts(app.name)
                 if any(covers(n, h) for n in bundle.info.names)]
        if not hosts:
            raise InvalidInput(
                f"the certificate ({', '.join(bundle.info.names[:5]) or 'no names'}) covers"
                f" none of {app.name}'s hosts: {', '.join(platform.certs.hosts(app.name))}")
        for host in hosts:
            platform.certs.store.install(host, bundle.chain_pem, bundle.key_pem,
                                         HostState(app=app.name, source="own", status="valid"))
        platform.store.record_event(ctx.key.name, "certs:add", app.name, " ".join(hosts))
    ctx.out(f"Installed the certificate for {', '.join(hosts)}"
            f" (valid until {format_time(bundle.info.not_after)})")


@command("certs:remove", "certs:remove [APP] HOST")
def certs_remove(ctx: Context, args: list[str]) -> None:
    """Remove a host's certificate (automatic HTTPS, when on, gets a new one)."""
    app = take_app(ctx, args, rest=1)
    host = take_one(args, "certs:remove [APP] HOST", names.hostname)
    platform = ctx.platform
    with platform.lock(app.name, f"certs:remove by {ctx.key.name}", ctx.err):
        if host not in platform.certs.hosts(app.name):
            raise NotFound(f"{app.name} has no host {host}")
        if not platform.certs.store.remove(host):
            raise NotFound(f"{host} has no certificate")
        platform.store.record_event(ctx.key.name, "certs:remove", app.name, host)
    platform.certs.request(app.name)
    ctx.out(f"Removed the certificate of {host}")
