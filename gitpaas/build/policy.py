"""What a tenant's Dockerfile may ask of the shared Docker engine (issue 11, 2 and 3).

The Dockerfile is read with Docker's own parser (the ``dockerfile`` package wraps the Go
parser that the classic builder uses), so what is checked here is what the builder runs:

- ``FROM`` (and ``COPY --from``) name only ``scratch``, ``gitpaas-base/*``, the app's own
  images (``<instance>/<app>:*``), images an admin allow-listed, or an earlier stage: any
  other local image (another app's release, another instance's) is another tenant's data;
- ``ADD`` of a URL is refused: the daemon fetches it from the host's network namespace,
  which reaches every app's web container (at its app-bridge address) and Redis;
- ``LABEL`` may not set ``gitpaas.*`` keys: gitpaas's containers are known by their names,
  but a label claiming another app must not even appear on a build's containers.

``ONBUILD`` instructions are checked as the instructions they become.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import dockerfile

from ..errors import DeployError

LABEL_PREFIX = "gitpaas."
BASE_REPOSITORY = "gitpaas-base"
_TAG = r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
_VAR = re.compile(r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?::?(?P<op>[-+])(?P<word>[^}]*))?\}"
                  r"|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))")


@dataclass(frozen=True)
class ImagePolicy:
    """The images one app's build may start from."""

    instance: str
    app: str
    allowed: tuple[str, ...] = ()  # admin patterns (fnmatch), e.g. "debian:bookworm-*"

    def permits(self, image: str) -> bool:
        """Whether ``image`` (a reference as written in ``FROM``) may be used."""
        if image == "scratch":
            return True
        if "@" in image:  # a digest can name any local image
            return False
        own = re.escape(f"{self.instance}/{self.app}")
        if re.fullmatch(rf"{BASE_REPOSITORY}/[a-z0-9][a-z0-9._-]*{_TAG}", image):
            return True
        if re.fullmatch(rf"{own}{_TAG}", image):
            return True
        return any(fnmatch.fnmatchcase(image, pattern) for pattern in self.allowed)


def allowed_patterns(setting: str, base_images: Iterable[str] = ()) -> tuple[str, ...]:
    """The admin's comma-separated allow-list plus the configured buildpack base images."""
    return tuple(p.strip() for p in [*setting.split(","), *base_images] if p.strip())


def expand(text: str, args: Mapping[str, str]) -> str:
    """``$NAME``, ``${NAME}``, ``${NAME:-word}``, ``${NAME:+word}`` from ``args``.

    Raises ``DeployError`` when a ``$`` is left that this cannot resolve."""

    def one(match: re.Match[str]) -> str:
        name = match.group("braced") or match.group("plain")
        value = args.get(name, "")
        if match.group("op") == "-":
            return value or match.group("word")
        if match.group("op") == "+":
            return match.group("word") if value else ""
        return value

    result = _VAR.sub(one, text)
    if "$" in result:
        raise DeployError(f"Dockerfile: cannot resolve {text!r}: name the image literally")
    return result


def _unquote(text: str) -> str:
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'" else text


def _flag(flags: Iterable[str], name: str) -> str | None:
    for flag in flags:
        if flag.startswith(f"--{name}="):
            return flag.split("=", 1)[1]
    return None


class _Checker:
    def __init__(self, policy: ImagePolicy, buildargs: Mapping[str, str]) -> None:
        self.policy = policy
        self.buildargs = buildargs
        self.args: dict[str, str] = {}  # ARGs declared before the first FROM
        self.stages: list[str] = []  # stage names (lower case), "" when unnamed

    def fail(self, line: int, reason: str) -> None:
        raise DeployError(f"Dockerfile line {line}: {reason}")

    def image(self, line: int, ref: str, what: str) -> None:
        if ref.lower() in self.stages and ref:
            return
        if not self.policy.permits(ref):
            self.fail(line, f"{what} {ref} is not allowed (use gitpaas-base/*, "
                            f"{self.policy.instance}/{self.policy.app}:*, scratch, or an "
                            "image the admin allows: build_allowed_images)")

    def command(self, cmd: dockerfile.Command, cmd_name: str | None = None) -> None:
        name = (cmd_name or cmd.cmd).upper()
        line = cmd.start_line
        if name == "ONBUILD":
            inner = cmd.original.split(None, 1)[1] if " " in cmd.original.strip() else ""
            for sub in _parse(inner):
                if sub.cmd.upper() in {"FROM", "ONBUILD"}:
                    self.fail(line, f"ONBUILD {sub.cmd.upper()} is not allowed")
                self.command(sub._replace(start_line=line))
        elif name == "ARG" and not self.stages:
            for decl in cmd.value:
                key, _, default = decl.partition("=")
                self.args[key] = self.buildargs.get(key, _unquote(default))
        elif name == "FROM":
            words = list(cmd.value)
            ref = expand(words[0], self.args) if words else ""
            self.image(line, ref, "FROM")
            alias = words[2].lower() if len(words) >= 3 and words[1].upper() == "AS" else ""
            self.stages.append(alias)
        elif name in {"COPY", "ADD"}:
            source = _flag(cmd.flags, "from")
            if source is not None:
                if source.isascii() and source.isdigit() and int(source) < len(self.stages) - 1:
                    pass
                elif "$" in source:
                    self.fail(line, f"{name} --from must name a stage or image literally")
                else:
                    self.image(line, source, f"{name} --from")
            if name == "ADD":
                for src in cmd.value[:-1]:
                    if "://" in src or src.startswith("git@"):
                        self.fail(line, f"ADD of a URL ({src}) is not allowed: the daemon "
                                        "would fetch it from the host; use RUN curl/wget")
        elif name == "LABEL":
            for key in cmd.value[::2]:
                key = _unquote(key)
                if key.startswith(LABEL_PREFIX) or "$" in key:
                    self.fail(line, f"LABEL {key} is reserved (gitpaas.* labels are set by "
                                    "gitpaas only)")


def _parse(text: str) -> list[dockerfile.Command]:
    try:
        return list(dockerfile.parse_string(text))
    except dockerfile.GoParseError as exc:
        raise DeployError(f"Dockerfile: {' '.join(str(exc).split())}") from exc


def check_dockerfile(text: str, policy: ImagePolicy,
                     buildargs: Mapping[str, str] | None = None) -> None:
    """Refuse a Dockerfile that reaches beyond the app (see the module docstring).

    Raises ``DeployError`` with the line and a one-line reason."""
    checker = _Checker(policy, buildargs or {})
    commands = _parse(text)
    for cmd in commands:
        checker.command(cmd)
    if not checker.stages:
        raise DeployError("Dockerfile: no FROM line")


def reserved_labels(labels: Mapping[str, str] | None, allowed: Iterable[str] = ()) -> list[str]:
    """The ``gitpaas.*`` labels of a built image, except ``allowed`` ones (base images')."""
    keep = set(allowed)
    return sorted(k for k in (labels or {}) if k.startswith(LABEL_PREFIX) and k not in keep)
