"""The single boundary that validates names. It rejects; it never rewrites."""

from __future__ import annotations

import re

from .errors import InvalidInput

APP_RE = re.compile(r"[a-z][a-z0-9-]{0,29}")
APP_RULE = "app names are 1-30 characters: a-z first, then a-z, 0-9 or '-'"
INSTANCE_RE = re.compile(r"[a-z][a-z0-9]{0,19}")
KEY_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
CONFIG_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
PROCESS_RE = re.compile(r"[a-z][a-z0-9_-]{0,29}")
HOST_LABEL_RE = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
BRANCH_RE = re.compile(r"[A-Za-z0-9._/*-]{1,200}")
STORAGE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
RESERVED_APPS = frozenset({"git", "help", "version", "apps", "keys", "routes"})


def _check(value: str, pattern: re.Pattern[str], what: str, rule: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise InvalidInput(f"invalid {what} {value!r}: {rule}")
    return value


def app_name(value: str) -> str:
    """Return ``value`` if it is a valid app name, else raise ``InvalidInput``."""
    _check(value, APP_RE, "app name", APP_RULE)
    if value.endswith("-") or "--" in value:
        raise InvalidInput(f"invalid app name {value!r}: {APP_RULE}, no '--', no '-' at the end")
    if value in RESERVED_APPS:
        raise InvalidInput(f"invalid app name {value!r}: it is reserved")
    return value


def instance_name(value: str) -> str:
    """An install's namespace: 1-20 characters, a-z first, then a-z or 0-9."""
    return _check(value, INSTANCE_RE, "instance name", "1-20 characters, a-z then a-z0-9")


RESERVED_KEYS = frozenset({"local"})  # the local admin CLI acts as "local"


def key_name(value: str) -> str:
    """A registered key's name (shown in releases and events)."""
    _check(value, KEY_NAME_RE, "key name", "1-64 characters of A-Z a-z 0-9 . _ @ -")
    if value in RESERVED_KEYS:
        raise InvalidInput(f"invalid key name {value!r}: it is reserved")
    return value


def config_key(value: str) -> str:
    """An environment variable name."""
    return _check(value, CONFIG_KEY_RE, "config key", "a letter or '_' then letters, digits, '_'")


def process_type(value: str) -> str:
    """A Procfile process type."""
    return _check(value, PROCESS_RE, "process type", "a-z first, then a-z, 0-9, '_' or '-'")


def hostname(value: str) -> str:
    """A DNS host name (lower case, no port, no trailing dot); ``*.`` wildcards allowed."""
    if not isinstance(value, str) or not 0 < len(value) <= 253:
        raise InvalidInput(f"invalid host name {value!r}")
    labels = value.split(".")
    if labels[0] == "*":
        labels = labels[1:]
    if len(labels) < 1 or not all(HOST_LABEL_RE.fullmatch(label) for label in labels):
        raise InvalidInput(f"invalid host name {value!r}: lower-case labels of a-z, 0-9, '-'")
    return value


NUMERIC_LABEL_RE = re.compile(r"[0-9]+|0x[0-9a-f]*")


def is_ip_literal(host: str) -> bool:
    """Whether a client would take ``host`` as an IP address, in any notation.

    Browsers (the WHATWG URL standard) and ``inet_aton`` read a host whose last label is
    a number (``127.0.0.1``, ``2130706433``, ``0x7f.1``, ``0177.0.0.1``) as IPv4; no DNS
    top-level domain is numeric. IPv6 literals (``[::1]``) hold characters no host name
    has.
    """
    host = host.lower().rstrip(".")
    if ":" in host or host.startswith("["):
        return True
    last = host.rsplit(".", 1)[-1]
    return bool(NUMERIC_LABEL_RE.fullmatch(last))


def is_local_name(host: str) -> bool:
    """``localhost`` and any name under it (RFC 6761: they all mean the host itself)."""
    host = host.lower().rstrip(".")
    return host == "localhost" or host.endswith(".localhost")


def branch_pattern(value: str) -> str:
    """A branch name or glob such as ``release/*``."""
    _check(value, BRANCH_RE, "branch", "letters, digits, '.', '_', '/', '*', '-'")
    if ".." in value or value.startswith(("/", "-")) or value.endswith(("/", ".lock")):
        raise InvalidInput(f"invalid branch {value!r}")
    return value


def storage_name(value: str) -> str:
    """An app's storage (a Docker volume ``<instance>.<app>.<name>``): one word, no path."""
    return _check(value, STORAGE_RE, "storage name",
                  "1-64 characters of A-Z a-z 0-9 _ - (a name, not a path)")
