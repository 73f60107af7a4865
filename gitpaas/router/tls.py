"""TLS termination: one certificate per domain, chosen by SNI.

``<tls_dir>/<name>.crt`` and ``<tls_dir>/<name>.key`` (PEM) for each name, where a name is
a host (``shop.example.com``) or a wildcard (``*.example.com``); ``default.crt``/``.key``,
when present, serves clients that send no (or an unknown) server name. Read at start.
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

log = logging.getLogger("gitpaas.router")


def _context(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["http/1.1"])
    ctx.load_cert_chain(cert, key)
    return ctx


def load_contexts(tls_dir: str | Path) -> dict[str, ssl.SSLContext]:
    """Every certificate of ``tls_dir`` by lower-cased name (``default`` included)."""
    contexts: dict[str, ssl.SSLContext] = {}
    for cert in sorted(Path(tls_dir).glob("*.crt")):
        key = cert.with_suffix(".key")
        if not key.is_file():
            log.warning("TLS certificate %s has no key %s; skipped", cert, key.name)
            continue
        try:
            contexts[cert.stem.lower()] = _context(cert, key)
        except (OSError, ssl.SSLError) as exc:
            log.warning("cannot load TLS certificate %s: %s", cert, exc)
    return contexts


def pick(contexts: dict[str, ssl.SSLContext], server_name: str | None) -> ssl.SSLContext | None:
    """The context for ``server_name``: exact, then ``*.`` + parent, then ``default``."""
    if server_name:
        name = server_name.lower().rstrip(".")
        if name in contexts:
            return contexts[name]
        _, dot, parent = name.partition(".")
        if dot and f"*.{parent}" in contexts:
            return contexts[f"*.{parent}"]
    return contexts.get("default")


def server_context(tls_dir: str | Path) -> ssl.SSLContext:
    """A server context whose SNI callback switches to the domain's certificate."""
    contexts = load_contexts(tls_dir)
    if not contexts:
        raise ValueError(f"no certificate (<name>.crt + <name>.key) in {tls_dir}")
    base = contexts.get("default") or next(iter(contexts.values()))

    def on_sni(sock: ssl.SSLObject, server_name: str | None, _ctx: ssl.SSLContext) -> None:
        chosen = pick(contexts, server_name)
        if chosen is not None:
            sock.context = chosen

    for ctx in {id(c): c for c in [base, *contexts.values()]}.values():
        ctx.sni_callback = on_sni
    return base
