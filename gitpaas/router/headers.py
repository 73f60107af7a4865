"""Pure parts of the request rewriting and the router's own responses."""

from __future__ import annotations

from collections.abc import Iterable

# Hop-by-hop headers (RFC 9110 7.6.1) plus the ones the router sets itself.
DROPPED = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"x-real-ip",
        b"x-forwarded-proto",
        b"x-forwarded-port",
    }
)

REASONS = {
    200: "OK",
    301: "Moved Permanently",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}

PAGES = {
    301: "Moved to HTTPS.",
    400: "Bad request.",
    404: "No application is configured at this address.",
    405: "Method not allowed.",
    408: "Request timeout.",
    431: "Request headers too large.",
    502: "No backend could answer this request.",
    503: "The router cannot look up this address right now. Try again shortly.",
    504: "The backend did not answer in time.",
}


def forwarded_suffix(client_ip: str, proto: str, port: int, forwarded_for: bytes | None) -> bytes:
    """The X-Forwarded-* and X-Real-IP lines for a client (``forwarded_for``: its own XFF)."""
    ip = client_ip.encode()
    chain = ip if forwarded_for is None else forwarded_for + b", " + ip
    return (
        b"X-Forwarded-For: %s\r\nX-Real-IP: %s\r\nX-Forwarded-Proto: %s\r\n"
        b"X-Forwarded-Port: %d\r\n" % (chain, ip, proto.encode(), port)
    )


def request_head(
    method: bytes,
    target: bytes,
    version: str,
    headers: list[tuple[bytes, bytes]],
    client_ip: str,
    proto: str,
    port: int,
    chunked: bool = False,
    upgrade: bytes | None = None,
    suffix: bytes = b"",
) -> bytes:
    """The request head sent to a backend: hop-by-hop headers dropped, X-Forwarded-* set.

    ``X-Forwarded-For`` gets the client appended to any value it sent; ``X-Real-IP``,
    ``X-Forwarded-Proto`` and ``X-Forwarded-Port`` are the router's, never the client's.
    ``suffix`` may hold :func:`forwarded_suffix` for a client that sent no XFF (a cache).
    """
    lines = [b"%s %s HTTP/%s\r\n" % (method, target, version.encode())]
    forwarded_for = None
    connection = None
    for name, value in headers:
        lower = name.lower()
        if lower in DROPPED:
            if lower == b"connection":
                connection = value if connection is None else connection + b"," + value
            continue
        if lower == b"x-forwarded-for":
            forwarded_for = value if forwarded_for is None else forwarded_for + b", " + value
            continue
        lines.append(b"%s: %s\r\n" % (name, value))
    if connection is not None:
        named = {t.strip().lower() for t in connection.split(b",")} - DROPPED
        named.discard(b"close")
        if named:
            lines[1:] = [x for x in lines[1:] if x.split(b":", 1)[0].lower() not in named]
    if forwarded_for is not None or not suffix:
        suffix = forwarded_suffix(client_ip, proto, port, forwarded_for)
    lines.append(suffix)
    if chunked:
        lines.append(b"Transfer-Encoding: chunked\r\n")
    if upgrade is not None:
        lines.append(b"Connection: Upgrade\r\nUpgrade: %s\r\n" % upgrade)
    elif version == "1.0":
        lines.append(b"Connection: close\r\n")
    lines.append(b"\r\n")
    return b"".join(lines)


def simple_response(
    status: int, keep_alive: bool = True, extra: Iterable[tuple[str, str]] = ()
) -> bytes:
    """A short text/plain response of the router itself (it names no app)."""
    body = (PAGES.get(status, REASONS.get(status, "")) + "\n").encode()
    head = [f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}"]
    head.append("Content-Type: text/plain; charset=utf-8")
    head.append(f"Content-Length: {len(body)}")
    head.extend(f"{k}: {v}" for k, v in extra)
    if not keep_alive:
        head.append("Connection: close")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def chunk(data: bytes) -> bytes:
    """``data`` as one chunk of a chunked body."""
    return b"%x\r\n%s\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"
