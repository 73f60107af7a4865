"""certs, certs:add, certs:remove: the TLS certificates of an app's hosts (see docs/https.md;
the doing: ``services.certs``)."""

from __future__ import annotations

from pathlib import Path

from .. import names
from ..edge.certstore import MAX_PEM_BYTES, format_time
from ..errors import InvalidInput
from ..services.certs import Certs
from .registry import Context, command
from .spec import APP, Arg, Flag, Parsed


@command("certs", Flag("--json"), app=APP)
def certs_list(ctx: Context, p: Parsed) -> None:
    """Show each host's certificate: state, issuer, expiry, and why it failed."""
    app = p.the_app
    reports = Certs(ctx.platform, ctx.key).report(app.name)
    if ctx.json_or_title(p, [r.as_json() for r in reports], f"{app.name} Certificates"):
        return
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


@command("certs:add", Arg("CRT KEY", optional=True, count=2), app=APP,
         note="over ssh: cat CRT KEY | ssh paas certs:add APP")
def certs_add(ctx: Context, p: Parsed) -> None:
    """Install your own certificate (chain + key) for the app hosts it covers."""
    app = p.the_app
    crt, key = p.many("CRT KEY") or ["-", "-"]
    if (crt != "-" or key != "-") and not ctx.is_local:
        raise InvalidInput("over ssh the certificate and key come on stdin:"
                           f" cat CRT KEY | ssh paas certs:add {app.name}")
    if crt == "-" and key == "-":
        cert_data = key_data = _read(ctx, "-")
    else:
        cert_data, key_data = _read(ctx, crt), _read(ctx, key)
    hosts, bundle = Certs(ctx.platform, ctx.key, ctx.err).add(app.name, cert_data, key_data)
    ctx.out(f"Installed the certificate for {', '.join(hosts)}"
            f" (valid until {format_time(bundle.info.not_after)})")


@command("certs:remove", Arg("HOST"), app=APP)
def certs_remove(ctx: Context, p: Parsed) -> None:
    """Remove a host's certificate (automatic HTTPS, when on, gets a new one)."""
    app = p.the_app
    host = names.hostname(p.required("HOST"))
    Certs(ctx.platform, ctx.key, ctx.err).remove(app.name, host)
    ctx.out(f"Removed the certificate of {host}")
