"""Certificates through Redis, for edges on other hosts (``gitpaas router``).

``gitpaas serve``'s data dir holds the certificate files (``CertStore``): they are the
source. Each install and removal is copied to Redis (``CertMirror``), and each full pass
of the certificate manager copies the whole directory again (a Redis that lost its data,
certificates from before this copy, an admin's files put there by hand):

- ``<prefix>cert:<host>``: a hash; ``chain`` (PEM, leaf first), ``key`` (PEM private
  key), ``digest`` (SHA-256 hex of chain and key, see :func:`digest`);
- ``<prefix>cert-hosts``: a set, the hosts that have such a hash (what a router lists);
- then the host on ``<prefix>certs``, the channel the edge already listens on.

The key is a secret: Redis, already trusted with every route, holds every certificate's
private key too (docs/security.md). Nothing here logs a key or a chain.

``gitpaas router`` runs :class:`CertSync`: at start, after each (re)subscription and
every ``FULL_SYNC_INTERVAL`` seconds it reads the index and each entry whose digest
differs from what it last wrote; a message naming a host syncs that host. Each entry is
checked (host name, size, PEM parsed, key matching the certificate, the certificate
covering the host) before its files are written (0600, atomically, into the edge's
``certs`` directory only); a refused entry is logged with the host and the reason and
leaves that host's files as they were. Hosts it wrote that Redis no longer has are
removed; files it did not write (an admin's, by
hand) are never touched: an entry for a host that has such files is refused (logged
once). What it wrote is listed in ``<data_dir>/edge/certs-synced.json``. The edge's Lua
sees new files within about a second (it re-checks a file at most a second old, sooner
after a message on the channel), and a pair whose key is not the chain's (read between
the two renames of ``write_pair``) is never served.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import redis

from ..errors import GitPaasError, InvalidInput
from .certstore import (
    MAX_PEM_BYTES,
    Bundle,
    _atomic_write,
    _safe_host,
    covers,
    parse_bundle,
    write_pair,
)

log = logging.getLogger("gitpaas.edge.certsync")

FULL_SYNC_INTERVAL = 60.0
MANIFEST = "certs-synced.json"


def cert_key(prefix: str, host: str) -> str:
    """The Redis hash of ``host``'s certificate chain and key."""
    return f"{prefix}cert:{host}"


def index_key(prefix: str) -> str:
    """The Redis set of hosts that have a ``cert:<host>`` hash."""
    return f"{prefix}cert-hosts"


def digest(chain_pem: bytes, key_pem: bytes) -> str:
    """What a router compares to know an entry changed (SHA-256 of both, hex)."""
    h = hashlib.sha256()
    for part in (chain_pem, key_pem):
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()


def check_entry(host: str, chain_pem: bytes, key_pem: bytes) -> Bundle:
    """The bundle of one entry, or ``InvalidInput`` saying why it is refused: a valid
    host name, PEM within size, the key matching the (leaf) certificate, which covers the
    host. An expired certificate is accepted: the copy serves what the source serves."""
    _safe_host(host)
    if len(chain_pem) > MAX_PEM_BYTES or len(key_pem) > MAX_PEM_BYTES:
        raise InvalidInput("larger than a certificate and its key")
    bundle = parse_bundle(chain_pem, key_pem, now=0.0)
    if not any(covers(n, host) for n in bundle.info.names):
        raise InvalidInput(f"the certificate ({', '.join(bundle.info.names[:3])})"
                           " does not cover the host")
    return bundle


def is_serve_data_dir(data_dir: Path) -> bool:
    """Whether ``data_dir`` is ``gitpaas serve``'s (its secret key, or its certificate
    manager's directory, is there): its certificate files are then the source of the
    copies in Redis, and no sync may write them (the default systemd install runs
    ``serve --no-router`` and ``gitpaas router`` on one data dir)."""
    return (data_dir / "secret.key").exists() or (data_dir / "edge" / "acme").is_dir()


def open_redis_warning(redis_url: str) -> str | None:
    """A warning when ``redis_url`` (which holds every certificate's key) is reached
    over the network without a password; None for loopback or with a password."""
    import ipaddress
    from urllib.parse import urlsplit

    url = urlsplit(redis_url)
    if url.scheme == "unix" or url.password or url.username:
        return None
    host = url.hostname or "127.0.0.1"
    try:
        if ipaddress.ip_address(host).is_loopback:
            return None
    except ValueError:
        if host == "localhost" or host.endswith(".localhost"):
            return None
    return (f"Redis at {host} has no password and holds every TLS private key:"
            " set requirepass and put it in redis_url (docs/security.md)")


def _client(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url, socket_timeout=10, socket_connect_timeout=5,
                                health_check_interval=30)


def redis_reason(exc: redis.RedisError) -> str:
    """A Redis error for a log line, without the command: redis-py writes a failed
    pipeline command's arguments (a key's PEM among them) into the message."""
    text = str(exc.args[0]) if exc.args else ""
    marker = " of pipeline caused error: "
    if marker in text:
        text = text.split(marker, 1)[1]
    elif text.startswith("Command # "):
        text = ""
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def _bytes(value: object) -> bytes:
    """A Redis reply as bytes (None and anything unexpected: empty)."""
    if isinstance(value, bytes):
        return value
    return value.encode() if isinstance(value, str) else b""


def _text(value: object, limit: int = 80) -> str:
    """A name from Redis, printable and short, for a log line."""
    raw = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return repr(raw[:limit])


# -- serve's side ------------------------------------------------------------------------


class CertMirror:
    """Copies ``CertStore``'s certificates to Redis. Redis errors are logged, never
    raised: the files are written already, and the next full pass copies them again."""

    def __init__(self, redis_url: str, prefix: str) -> None:
        self.prefix = prefix
        self._redis = _client(redis_url)
        self._bad: dict[str, str] = {}   # host -> digest of files refused (logged once)

    def put(self, host: str, chain_pem: bytes, key_pem: bytes) -> bool:
        """Store ``host``'s chain and key (one transaction with the index); True if done."""
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(cert_key(self.prefix, host))
        pipe.hset(cert_key(self.prefix, host), mapping={
            "chain": chain_pem, "key": key_pem, "digest": digest(chain_pem, key_pem)})
        pipe.sadd(index_key(self.prefix), host)
        return self._run(pipe, f"cannot copy the certificate of {host} to Redis")

    def delete(self, host: str) -> bool:
        """Remove ``host``'s entry and its place in the index; True if done."""
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(cert_key(self.prefix, host))
        pipe.srem(index_key(self.prefix), host)
        return self._run(pipe, f"cannot remove the certificate of {host} from Redis")

    @staticmethod
    def _run(pipe: Any, what: str) -> bool:
        try:
            pipe.execute()
        except redis.RedisError as exc:
            log.warning("%s: %s", what, redis_reason(exc))
            return False
        return True

    def reconcile(self, local: Mapping[str, tuple[bytes, bytes]],
                  still_there: Callable[[str], bool] | None = None) -> list[str]:
        """Make Redis hold ``local`` (host -> (chain, key), as read from the files): an
        entry whose digest differs is checked (``check_entry``: a pair that fails is not
        copied, and logged once) and written; hosts not copied are removed from Redis
        unless ``still_there(host)``, asked just before, says they came meanwhile. An
        unchanged pair is not parsed again. The changed hosts (to publish)."""
        try:
            remote = {_bytes(m).decode("utf-8", "replace") for m in
                      self._redis.smembers(index_key(self.prefix))}
            hosts = sorted(local)
            pipe = self._redis.pipeline(transaction=False)
            for host in hosts:
                pipe.hget(cert_key(self.prefix, host), "digest")
            digests = pipe.execute() if hosts else []
        except redis.RedisError as exc:
            log.warning("cannot copy the certificates to Redis: %s", redis_reason(exc))
            return []
        changed, copied = [], set()
        for host, remote_digest in zip(hosts, digests, strict=True):
            chain, key = local[host]
            got = digest(chain, key)
            if host in remote and _bytes(remote_digest).decode("ascii", "replace") == got:
                copied.add(host)
            elif self._valid(host, chain, key, got):
                copied.add(host)
                if self.put(host, chain, key):
                    changed.append(host)
        for host in sorted(remote - copied):
            if still_there is not None and host not in local and still_there(host):
                continue
            if self.delete(host):
                changed.append(host)
        return changed

    def _valid(self, host: str, chain: bytes, key: bytes, got: str) -> bool:
        try:
            check_entry(host, chain, key)
        except Exception as exc:  # noqa: BLE001 - any parse failure: not copied
            if self._bad.get(host) != got:
                self._bad[host] = got
                reason = exc.message if isinstance(exc, GitPaasError) else type(exc).__name__
                log.warning("certificate of %s not copied to Redis: %s", host, reason)
            return False
        self._bad.pop(host, None)
        return True


# -- the router's side -------------------------------------------------------------------


class CertSync:
    """Writes the certificates Redis holds into one edge's ``certs`` directory."""

    def __init__(self, redis_url: str, prefix: str, edge_dir: Path) -> None:
        self.prefix = prefix
        self.certs_dir = edge_dir / "certs"
        self.manifest_path = edge_dir / MANIFEST
        self._redis = _client(redis_url)
        self._synced = self._load_manifest()   # host -> digest of what was written
        self._refused: dict[str, str] = {}      # host -> digest last refused (logged once)
        self._dirty = False                      # the manifest is to be saved

    # -- the manifest: which files this sync wrote -----------------------------------------

    def _load_manifest(self) -> dict[str, str]:
        try:
            raw = json.loads(self.manifest_path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("certificate sync: ignoring unreadable %s: %s", self.manifest_path, exc)
            return {}
        synced = {}
        for host, value in (raw.items() if isinstance(raw, dict) else ()):
            try:
                synced[_safe_host(host)] = str(value)
            except (InvalidInput, TypeError):
                continue
        return synced

    def _save_manifest(self) -> None:
        self._dirty = False
        _atomic_write(self.manifest_path, json.dumps(self._synced, sort_keys=True).encode(),
                      0o600)

    @property
    def synced(self) -> dict[str, str]:
        """Hosts whose files this sync wrote, and the digest of each."""
        return dict(self._synced)

    # -- files -----------------------------------------------------------------------------

    def _paths(self, host: str) -> tuple[Path, Path]:
        name = _safe_host(host)
        crt, key = self.certs_dir / f"{name}.crt", self.certs_dir / f"{name}.key"
        for path in (crt, key):  # defence in depth: the name was validated already
            if path.parent != self.certs_dir or path.name.startswith("."):
                raise InvalidInput(f"invalid host name {host!r}")
        return crt, key

    def _not_ours(self, host: str) -> bool:
        """Whether the host has a file here that this sync did not write (an admin's):
        the host is not in the manifest and its ``.crt`` or ``.key`` exists."""
        return host not in self._synced and any(
            p.exists() or p.is_symlink() for p in self._paths(host))

    def _write(self, host: str, bundle: Bundle) -> bool:
        """Write the host's files if they differ; True if written. Only for a host the
        manifest lists or without files (``_not_ours`` is checked first)."""
        crt, key = self._paths(host)
        try:
            if crt.read_bytes() == bundle.chain_pem and key.read_bytes() == bundle.key_pem:
                return False
        except OSError:
            pass
        self.certs_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_pair(crt, bundle.chain_pem, 0o600, key, bundle.key_pem)
        return True

    def _remove(self, host: str) -> bool:
        """Delete the host's files if the manifest lists the host (the sync wrote them),
        and drop it from the manifest; True if it was listed."""
        if host not in self._synced:
            return False
        for path in self._paths(host):
            path.unlink(missing_ok=True)
        self._synced.pop(host, None)
        self._refused.pop(host, None)
        self._dirty = True
        log.info("certificate sync: removed the certificate of %s (gone from Redis)", host)
        return True

    # -- reading Redis ---------------------------------------------------------------------

    def _fetch(self, host: str) -> tuple[bool, bytes, bytes, str]:
        """(listed with a chain and a key, chain, key, declared digest). Sizes are asked
        first: an oversized value is refused without being read."""
        key = cert_key(self.prefix, host)
        pipe = self._redis.pipeline(transaction=False)
        pipe.sismember(index_key(self.prefix), host)
        pipe.hstrlen(key, "chain")
        pipe.hstrlen(key, "key")
        member, chain_len, key_len = pipe.execute(raise_on_error=False)
        for value in (member, chain_len, key_len):
            if isinstance(value, redis.ConnectionError | redis.TimeoutError):
                raise value
            if isinstance(value, Exception):
                raise InvalidInput(f"unreadable entry ({type(value).__name__})")
        if not member or not chain_len or not key_len:
            return False, b"", b"", ""
        if chain_len > MAX_PEM_BYTES or key_len > MAX_PEM_BYTES:
            raise InvalidInput("larger than a certificate and its key")
        chain, pem_key, declared = self._redis.hmget(key, ["chain", "key", "digest"])
        if not chain or not pem_key:
            return False, b"", b"", ""
        return True, _bytes(chain), _bytes(pem_key), _bytes(declared).decode("ascii", "replace")

    def sync_host(self, host: str, save: bool = True) -> str:
        """Bring one host's files in line with Redis: ``written``, ``same``, ``removed``,
        ``refused`` or ``absent``; then save the manifest if it changed (unless ``save``
        is False: ``sync_all`` saves once). Redis connection errors propagate."""
        try:
            return self._sync_host(host)
        finally:
            if save and self._dirty:
                self._save_manifest()

    def _sync_host(self, host: str) -> str:
        try:
            _safe_host(host)
        except InvalidInput:
            log.warning("certificate sync: refused an entry: invalid host name %s", _text(host))
            return "refused"
        try:
            present, chain, key, _ = self._fetch(host)
        except InvalidInput as exc:
            return self._refuse(host, "unreadable", str(exc))
        if not present:
            if host in self._synced:
                self._remove(host)
                return "removed"
            return "absent"
        got = digest(chain, key)
        if self._not_ours(host):
            return self._refuse(host, got, "files the sync did not write are there (an"
                                " admin's, by hand)")
        try:
            bundle = check_entry(host, chain, key)
        except Exception as exc:  # noqa: BLE001 - hostile PEM: any parse failure is a refusal
            reason = exc.message if isinstance(exc, GitPaasError) else type(exc).__name__
            return self._refuse(host, got, reason)
        written = self._write(host, bundle)
        self._refused.pop(host, None)
        if written or self._synced.get(host) != got:
            self._synced[host] = got
            self._dirty = True
        if written:
            log.info("certificate sync: installed the certificate of %s (until %s)", host,
                     time.strftime("%Y-%m-%d", time.gmtime(bundle.info.not_after)))
        return "written" if written else "same"

    def _refuse(self, host: str, got: str, reason: str) -> str:
        if self._refused.get(host) != got:  # each bad entry logged once, not every pass
            self._refused[host] = got
            log.warning("certificate sync: refused the certificate of %s from Redis: %s"
                        " (its files stay as they were)", host, reason)
        return "refused"

    def sync_all(self) -> dict[str, str]:
        """Every host Redis lists or this sync wrote: host -> outcome (unchanged entries,
        by digest, are ``same`` without being read)."""
        listed = self._redis.smembers(index_key(self.prefix))
        hosts: set[str] = set(self._synced)
        for raw in listed:
            try:
                hosts.add(_safe_host(_bytes(raw).decode("ascii")))
            except (InvalidInput, UnicodeDecodeError):
                if self._refused.get(_text(raw)) is None:
                    self._refused[_text(raw)] = ""
                    log.warning("certificate sync: refused an entry: invalid host name %s",
                                _text(raw))
        order = sorted(hosts)
        pipe = self._redis.pipeline(transaction=False)
        for host in order:
            pipe.hget(cert_key(self.prefix, host), "digest")
        declared = pipe.execute(raise_on_error=False) if order else []
        outcome: dict[str, str] = {}
        try:
            for host, remote in zip(order, declared, strict=True):
                known = self._synced.get(host)
                if (known is not None and isinstance(remote, bytes)
                        and remote.decode("ascii", "replace") == known
                        and host.encode() in listed
                        and all(p.exists() for p in self._paths(host))):
                    outcome[host] = "same"
                    continue
                outcome[host] = self.sync_host(host, save=False)
                if self._dirty and len(outcome) % 500 == 0:
                    self._save_manifest()  # a long first sync keeps what it did so far
        finally:
            if self._dirty:
                self._save_manifest()
        return outcome

    def handle(self, message: bytes) -> None:
        """A message on the certs channel: a host name syncs that host, anything else
        all of them."""
        try:
            host = _safe_host(message.decode("ascii"))
        except (InvalidInput, UnicodeDecodeError):
            self.sync_all()
            return
        self.sync_host(host)

    # -- the loop --------------------------------------------------------------------------

    def run(self, stop: threading.Event, full_interval: float = FULL_SYNC_INTERVAL) -> None:
        """Until ``stop``: subscribe, sync all, then follow the channel; all again every
        ``full_interval`` seconds and after each reconnection."""
        from .certs import certs_channel

        backoff = 0.5
        while not stop.is_set() and not self._source_now():
            pubsub = self._redis.pubsub(  # type: ignore[no-untyped-call]
                ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(certs_channel(self.prefix))
                self.sync_all()
                backoff, next_full = 0.5, time.monotonic() + full_interval
                while not stop.is_set():
                    msg = pubsub.get_message(timeout=1.0)
                    if msg and msg.get("type") == "message":
                        if self._source_now():
                            return
                        self.handle(msg["data"])
                    if time.monotonic() >= next_full:
                        if self._source_now():
                            return
                        next_full = time.monotonic() + full_interval
                        self.sync_all()
            except redis.RedisError as exc:
                log.warning("certificate sync: Redis: %s (again in %.1f s)", redis_reason(exc),
                            backoff)
                stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)
            except Exception:  # noqa: BLE001 - the sync must outlive one failure
                log.exception("certificate sync failed")
                stop.wait(5.0)
            finally:
                pubsub.close()

    def _source_now(self) -> bool:
        """True (logged) once this data dir turned out to be ``serve``'s: stop syncing."""
        if not is_serve_data_dir(self.certs_dir.parent.parent):
            return False
        log.info("certificate sync off: %s is gitpaas serve's data dir (its certificates"
                 " are the source)", self.certs_dir.parent.parent)
        return True

    def start_in_thread(self) -> threading.Event:
        """Run :meth:`run` on a daemon thread; set the event to stop it."""
        stop = threading.Event()
        threading.Thread(target=self.run, args=(stop,), daemon=True, name="cert-sync").start()
        return stop
