"""Log drains: every process's lines and the platform's events of an app, forwarded.

``drains:add APP URL`` with ``syslog+tcp://HOST:PORT``, ``syslog+tls://HOST:PORT``
(RFC 5424 messages, octet-counted framing of RFC 6587) or ``https://...`` (POSTs of
newline-delimited JSON objects, batched). ``gitpaas serve`` runs a ``DrainForwarder``: a
follower per running container of an app that has drains (Docker's log stream, from the
moment it is first seen), a poll of the app's events, and a sender per drain with a
bounded queue. A drain that is down is retried with back-off; its queue drops the oldest
lines when full, so a slow or dead drain never slows an app or a deploy.

Destinations are checked when added and again before every connection: for non-admins
every address a name resolves to must be a global one (no loopback, private, link-local
or the like), so a drain cannot carry a tenant's log lines to Redis, MariaDB or any other
service on the host or its networks. The connection goes to an address of that same
answer (``open_checked``), never to a second lookup of the name; TLS still verifies the
certificate against the name.
"""

from __future__ import annotations

import base64
import collections
import http.client
import ipaddress
import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from . import names
from .errors import Forbidden, InvalidInput

if TYPE_CHECKING:
    from .platform import Platform
    from .runtime import ContainerInfo

log = logging.getLogger(__name__)
SCHEMES = ("syslog+tcp", "syslog+tls", "https", "http")
QUEUE_LINES = 10_000
BATCH_LINES = 500
BATCH_SECONDS = 1.0
BACKOFF_MAX = 60.0
POLL_SECONDS = 2.0
MAX_LINE = 8 * 1024


@dataclass(frozen=True)
class Drain:
    """A parsed drain URL."""

    url: str
    scheme: str
    host: str
    port: int
    private_ok: bool = False  # added by an admin: private and loopback addresses allowed


def parse_url(url: str, admin: bool) -> Drain:
    """Validate a drain URL; ``InvalidInput``/``Forbidden`` with a one-line reason."""
    if len(url) > 1000 or any(c in url for c in "\r\n\x00 "):
        raise InvalidInput("a drain URL is one word of at most 1000 characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidInput(f"invalid drain URL: {exc}") from exc
    if parts.scheme not in SCHEMES:
        raise InvalidInput("a drain URL starts with syslog+tcp://, syslog+tls:// or https://")
    if parts.scheme == "http" and not admin:
        raise Forbidden("plain http:// drains are for admins: use https://")
    if parts.scheme.startswith("syslog") and (parts.username or parts.password):
        raise InvalidInput("a syslog drain URL holds no user or password")
    host = parts.hostname or ""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        names.hostname(host)
    if parts.scheme.startswith("syslog"):
        if port is None:
            raise InvalidInput("a syslog drain needs a port: syslog+tcp://HOST:PORT")
        if parts.path not in {"", "/"} or parts.query:
            raise InvalidInput("a syslog drain URL is syslog+tcp://HOST:PORT")
    port = port or (443 if parts.scheme == "https" else 80)
    drain = Drain(url, parts.scheme, host, port, admin)
    check_destination(drain)
    return drain


def check_destination(drain: Drain) -> list[tuple[Any, ...]]:
    """The addresses to connect to; refused when a non-admin's drain reaches a non-global
    address (checked at every connection: DNS may change)."""
    try:
        infos = socket.getaddrinfo(drain.host, drain.port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise InvalidInput(f"cannot resolve {drain.host}: {exc.strerror}") from exc
    if not drain.private_ok:
        for info in infos:
            address = ipaddress.ip_address(info[4][0])
            if not address.is_global:
                raise Forbidden(f"{drain.host} resolves to {address}, not a public address:"
                                " only admins may drain to private or local addresses")
    return infos


def syslog_frame(app: str, source: str, release: str, text: str, when: float,
                 hostname: str = "gitpaas") -> bytes:
    """One RFC 5424 message (facility user, severity info), octet-counted (RFC 6587)."""
    stamp = datetime.fromtimestamp(when, UTC).isoformat(timespec="microseconds")
    stamp = stamp.replace("+00:00", "Z")
    msg = f"<14>1 {stamp} {hostname} {app} {source} {release or '-'} - {text}".encode(
        "utf-8", "replace")
    return f"{len(msg)} ".encode() + msg


@dataclass(frozen=True)
class Line:
    """One forwarded line."""

    app: str
    source: str  # web.1, cron.1, gitpaas (an event)
    release: str  # v3, or "" for events
    text: str
    when: float

    def json(self) -> dict[str, Any]:
        return {"time": datetime.fromtimestamp(self.when, UTC).isoformat(), "app": self.app,
                "process": self.source, "release": self.release, "line": self.text}


def open_checked(drain: Drain, timeout: float = 10.0) -> socket.socket:
    """A TCP connection to an address of ``drain.host`` that ``check_destination`` just
    passed: the name is resolved once, and that answer's addresses are the ones tried.
    (Letting a client library resolve the name again would open a DNS-rebinding window:
    a name that answers a public address to the check and ``127.0.0.1`` a moment later.)"""
    error: OSError = OSError(f"no address for {drain.host}")
    for family, kind, proto, _, address in check_destination(drain):
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(timeout)
            sock.connect(address)
            return sock
        except OSError as exc:  # the next address of the answer, as create_connection
            sock.close()
            error = exc
        except BaseException:
            sock.close()
            raise
    raise error


class CheckedHTTPConnection(http.client.HTTPConnection):
    """``http.client`` over ``open_checked``: the Host header names the drain's host,
    the connection goes to the address that was checked."""

    def __init__(self, drain: Drain, timeout: float = 10.0) -> None:
        super().__init__(drain.host, drain.port, timeout=timeout)
        self.drain = drain

    def connect(self) -> None:
        self.sock = open_checked(self.drain, self.timeout or 10.0)


class CheckedHTTPSConnection(http.client.HTTPSConnection):
    """``http.client`` over TLS over ``open_checked``: the certificate is verified
    against the drain's host name (also sent as SNI), not the address."""

    def __init__(self, drain: Drain, context: ssl.SSLContext, timeout: float = 10.0) -> None:
        super().__init__(drain.host, drain.port, timeout=timeout, context=context)
        self.drain = drain
        self.tls = context

    def connect(self) -> None:
        sock = open_checked(self.drain, self.timeout or 10.0)
        try:
            self.sock = self.tls.wrap_socket(sock, server_hostname=self.drain.host)
        except BaseException:
            sock.close()
            raise


def post(drain: Drain, body: bytes, context: ssl.SSLContext, timeout: float = 10.0) -> None:
    """POST ``body`` (NDJSON) to an http(s) drain, connected as ``open_checked`` says;
    the URL's user and password become Basic authentication. A redirect is never
    followed (it could point at an address the check refused): any status from 300 up
    is an ``OSError``."""
    parts = urlsplit(drain.url)
    headers = {"Content-Type": "application/x-ndjson", "User-Agent": "gitpaas-drain"}
    if parts.username or parts.password:
        token = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(token.encode()).decode()
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    conn: http.client.HTTPConnection = (
        CheckedHTTPSConnection(drain, context, timeout) if drain.scheme == "https"
        else CheckedHTTPConnection(drain, timeout))
    try:
        conn.request("POST", target, body=body, headers=headers)
        response = conn.getresponse()  # its body is never read: only the status counts
        if 300 <= response.status < 400:
            raise OSError(f"the drain answered a redirect ({response.status}): not followed")
        if response.status >= 300:
            raise OSError(f"HTTP {response.status}")
    except http.client.HTTPException as exc:
        raise OSError(f"HTTP: {exc!r}") from exc
    finally:
        conn.close()


class Sender:
    """One drain's queue and the thread that empties it, retrying with back-off."""

    def __init__(self, drain: Drain, ca_file: str = "") -> None:
        self.drain = drain
        self.ca_file = ca_file
        self.queue: collections.deque[Line] = collections.deque(maxlen=QUEUE_LINES)
        self.dropped = 0
        self.sent = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        threading.Thread(target=self._loop, daemon=True, name="drain").start()

    def put(self, line: Line) -> None:
        """Never blocks: a full queue drops its oldest line."""
        if len(self.queue) == self.queue.maxlen:
            self.dropped += 1
        self.queue.append(line)
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def _batch(self) -> list[Line]:
        batch: list[Line] = []
        while self.queue and len(batch) < BATCH_LINES:
            batch.append(self.queue.popleft())
        return batch

    def _loop(self) -> None:
        backoff = 1.0
        while not self._stop.is_set():
            self._wake.wait(BATCH_SECONDS)
            self._wake.clear()
            batch = self._batch()
            if not batch:
                continue
            try:
                self._send(batch)
                self.sent += len(batch)
                backoff = 1.0
            except (OSError, InvalidInput, Forbidden, ssl.SSLError) as exc:
                log.info("drain %s: %s; retrying in %.0f s", public_url(self.drain.url), exc,
                         backoff)
                self._close()
                for line in reversed(batch):  # keep them, in order, for the next try
                    if len(self.queue) < QUEUE_LINES:
                        self.queue.appendleft(line)
                if self._stop.wait(backoff):
                    break
                backoff = min(BACKOFF_MAX, backoff * 2)
        self._close()

    def _context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        if self.ca_file:
            context.load_verify_locations(self.ca_file)
        return context

    def _connect(self) -> socket.socket:
        sock = open_checked(self.drain)
        if self.drain.scheme == "syslog+tls":
            try:
                sock = self._context().wrap_socket(sock, server_hostname=self.drain.host)
            except BaseException:
                sock.close()
                raise
        return sock

    def _send(self, batch: list[Line]) -> None:
        if self.drain.scheme.startswith("syslog"):
            if self._sock is None:
                self._sock = self._connect()
            self._sock.sendall(b"".join(
                syslog_frame(li.app, li.source, li.release, li.text, li.when) for li in batch))
            return
        body = "".join(json.dumps(li.json()) + "\n" for li in batch).encode()
        post(self.drain, body, self._context())

    def _close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
            self._sock = None


class DrainForwarder:
    """Follows the containers and events of apps with drains; feeds their senders."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.senders: dict[tuple[str, str], Sender] = {}
        self.followed: set[str] = set()
        self.last_event: dict[str, float] = {}
        self._lock = threading.Lock()

    def _targets(self, app: str) -> list[Sender]:
        with self._lock:
            return [s for (a, _), s in self.senders.items() if a == app]

    def deliver(self, line: Line) -> None:
        for sender in self._targets(line.app):
            sender.put(line)

    def sync(self) -> None:
        """One pass: senders for the drains that exist, followers for new containers,
        the apps' new events."""
        store = self.platform.store
        wanted = {(d["app"], d["url"]): d for d in store.all_drains()}
        with self._lock:
            for key in set(self.senders) - set(wanted):
                self.senders.pop(key).stop()
            for key, row in wanted.items():
                if key not in self.senders:
                    parts = urlsplit(row["url"])
                    drain = Drain(row["url"], parts.scheme, parts.hostname or "",
                                  parts.port or (80 if parts.scheme == "http" else 443),
                                  bool(row["private_ok"]))
                    self.senders[key] = Sender(drain, self.platform.settings.drain_ca_file)
        apps = {app for app, _ in wanted}
        now = time.time()
        for app in apps:
            self._follow_new(app, now)
            self._forward_events(app, now)

    def _follow_new(self, app: str, now: float) -> None:
        for info in self.platform.runtime.list(app):
            if info.status != "running" or info.id in self.followed:
                continue
            self.followed.add(info.id)
            threading.Thread(target=self._follow, args=(info, int(now)), daemon=True,
                             name=f"drain-follow-{info.name}").start()

    def _follow(self, info: ContainerInfo, since: int) -> None:
        source, release = f"{info.process}.{info.replica}", f"v{info.release}"
        try:
            for text in self.platform.runtime.follow_logs(info.id, since):
                self.deliver(Line(info.app, source, release, text[:MAX_LINE], time.time()))
        except Exception:  # noqa: BLE001 - a container that went away ends its follower
            log.debug("drain follower of %s ended", info.name, exc_info=True)
        finally:
            self.followed.discard(info.id)

    def _forward_events(self, app: str, now: float) -> None:
        since = self.last_event.setdefault(app, now)
        fresh = [e for e in self.platform.store.events(app, 200) if e[0] > since]
        for created_at, actor, action, _, detail in sorted(fresh):
            self.deliver(Line(app, "gitpaas", "", f"{action} by {actor}: {detail}",
                              created_at))
            self.last_event[app] = max(self.last_event[app], created_at)

    def loop(self, stop: threading.Event, interval: float = POLL_SECONDS) -> None:
        while not stop.wait(interval):
            try:
                self.sync()
            except Exception:  # noqa: BLE001 - keep forwarding
                log.exception("drain pass failed")


def start_in_thread(platform: Platform, interval: float = POLL_SECONDS) -> threading.Event:
    """Run a ``DrainForwarder`` on a daemon thread; set the returned event to stop it."""
    stop = threading.Event()
    forwarder = DrainForwarder(platform)
    threading.Thread(target=forwarder.loop, args=(stop, interval), daemon=True,
                     name="drains").start()
    return stop


def lines_of(chunks: Iterator[bytes]) -> Iterator[str]:
    """Docker's log stream (chunks of bytes) as text lines."""
    partial = b""
    for chunk in chunks:
        partial += chunk
        *lines, partial = partial.split(b"\n")
        for line in lines:
            yield line.decode("utf-8", "replace").rstrip("\r")
    if partial:
        yield partial.decode("utf-8", "replace")



def public_url(url: str) -> str:
    """A drain URL as listings show it: no user, password or query (they may be tokens)."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}{parts.path}"
