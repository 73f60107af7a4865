"""One declaration per command: its flags, options and arguments.

A command is declared once (``@command("config:get", Arg("KEY"), Flag("--encoded"),
app=APP)``); from that declaration come its usage line (``help``, ``help COMMAND``,
docs/commands.md, checked by a unit test), the parsing of its arguments (``parse``), and
the one-line error a bad line gets (`` !     missing KEY (usage: config:get [APP] KEY
[--encoded])``). The app argument follows one rule everywhere (``resolve_app``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import InvalidInput, UserError
from ..services.access import Access
from ..store import App, Key

if TYPE_CHECKING:
    from ..platform import Platform

# What a command does with the app: none; one app (inferred when not given); or one app
# when named, else every app the key reaches (``routes``, ``events``).
NO_APP, APP, APP_OR_ALL = "none", "app", "app-or-all"
APP_OPTIONS = ("--app", "-a")


@dataclass(frozen=True)
class Flag:
    """A boolean flag: ``Flag("-t|--tail")`` shows both names; ``aliases`` are accepted
    but not shown."""

    spelling: str
    aliases: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return (*self.spelling.split("|"), *self.aliases)

    @property
    def key(self) -> str:
        return self.spelling.split("|")[0]

    def usage(self) -> str:
        return f"[{self.spelling}]"


@dataclass(frozen=True)
class Option:
    """An option with a value (``--opt VALUE`` or ``--opt=VALUE``; the last one counts).
    ``required`` ones are shown without brackets; the command says what is missing in its
    own words (``--confirm``: "this destroys shop and its data: add --confirm shop")."""

    name: str
    metavar: str
    aliases: tuple[str, ...] = ()
    required: bool = False

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)

    @property
    def key(self) -> str:
        return self.name

    def usage(self) -> str:
        text = f"{self.name} {self.metavar}"
        return text if self.required else f"[{text}]"


@dataclass(frozen=True)
class Arg:
    """Positional argument(s): ``count`` of them (``Arg("CRT KEY", count=2)``), or one or
    more (``many``); ``optional`` ones may be left out. ``pattern``: what such an argument
    always looks like; one that does not is refused, and a first argument that does is
    never taken for the app. ``literal``: the argument is this word."""

    metavar: str
    optional: bool = False
    many: bool = False
    count: int = 1
    pattern: re.Pattern[str] | None = None
    literal: bool = False

    def usage(self) -> str:
        text = f"{self.metavar} ..." if self.many else self.metavar
        return f"[{text}]" if self.optional else text

    def matches(self, value: str) -> bool:
        if self.literal:
            return value == self.metavar
        return self.pattern is None or bool(self.pattern.fullmatch(value))


@dataclass(frozen=True)
class Rest:
    """Everything after ``--``: a command line handed on as an argument list."""

    metavar: str
    optional: bool = False

    def usage(self) -> str:
        return f"[-- {self.metavar}]" if self.optional else f"-- {self.metavar}"


Param = Flag | Option | Arg | Rest


@dataclass(frozen=True)
class Spec:
    """The declaration of one command's line."""

    name: str
    params: tuple[Param, ...] = ()
    app: str = NO_APP
    note: str = ""

    def usage(self) -> str:
        parts = [self.name]
        if self.app != NO_APP:
            parts.append("[APP]")
        parts += [p.usage() for p in self.params]
        line = " ".join(parts)
        return f"{line}   ({self.note})" if self.note else line

    @property
    def args(self) -> list[Arg]:
        return [p for p in self.params if isinstance(p, Arg)]

    @property
    def rest(self) -> Rest | None:
        return next((p for p in self.params if isinstance(p, Rest)), None)

    def accepts(self, count: int) -> bool:
        """Whether ``count`` positionals fit the declared arguments."""
        sums = {0}
        unbounded = False
        for arg in self.args:
            choices = {0, arg.count} if arg.optional else {arg.count}
            sums = {s + c for s in sums for c in choices}
            unbounded = unbounded or arg.many
        return count in sums or (unbounded and count >= min(sums))

    def looks_like_first_arg(self, positionals: list[str]) -> bool:
        """Whether the first positional is surely an argument: it looks like the first
        declared one and the line fits without an app."""
        first = self.first_with_look()
        return first is not None and self.accepts(len(positionals)) \
            and first.matches(positionals[0])

    def must_be_app(self, positionals: list[str]) -> bool:
        """Whether the count (or the look) of the positionals says the first is the app."""
        count = len(positionals)
        if self.accepts(count - 1) and not self.accepts(count):
            return True
        first = self.first_with_look()
        return first is not None and not first.matches(positionals[0])

    def first_with_look(self) -> Arg | None:
        """The first declared argument, if it has a look (a pattern or a literal word)."""
        args = self.args
        if args and (args[0].pattern is not None or args[0].literal):
            return args[0]
        return None


@dataclass
class Parsed:
    """A parsed command line: the app (if any), flags, options, arguments by metavar."""

    spec: Spec
    app: App | None = None
    flags: set[str] = field(default_factory=set)
    options: dict[str, str] = field(default_factory=dict)
    values: dict[str, list[str]] = field(default_factory=dict)
    command: list[str] = field(default_factory=list)

    def flag(self, name: str) -> bool:
        """Whether the flag (its first shown name) was given."""
        if not any(isinstance(p, Flag) and p.key == name for p in self.spec.params):
            raise KeyError(f"{self.spec.name} declares no flag {name}")
        return name in self.flags

    def option(self, name: str) -> str | None:
        """The option's value (the last one given), or None."""
        if not any(isinstance(p, Option) and p.key == name for p in self.spec.params):
            raise KeyError(f"{self.spec.name} declares no option {name}")
        return self.options.get(name)

    def arg(self, metavar: str) -> str | None:
        """The value of a one-value argument, or None when left out."""
        found = self.many(metavar)
        return found[0] if found else None

    def required(self, metavar: str) -> str:
        value = self.arg(metavar)
        assert value is not None, metavar  # the parser refuses a line without it
        return value

    def many(self, metavar: str) -> list[str]:
        if not any(a.metavar == metavar for a in self.spec.args):
            raise KeyError(f"{self.spec.name} declares no argument {metavar}")
        return list(self.values.get(metavar, []))

    @property
    def the_app(self) -> App:
        """The app of a command declared with ``app=APP``."""
        assert self.app is not None, self.spec.name
        return self.app


def bad(spec: Spec, message: str) -> InvalidInput:
    """The one-line error of a bad line, with the command's usage."""
    return InvalidInput(f"{message} (usage: {spec.usage()})")


def split_tokens(spec: Spec, argv: Sequence[str]) -> tuple[Parsed, list[str], str | None]:
    """Flags and options out of ``argv``: (parsed so far, positionals, ``--app`` value)."""
    parsed = Parsed(spec)
    tokens = list(argv)
    rest = spec.rest
    if rest is not None and "--" in tokens:
        at = tokens.index("--")
        tokens, parsed.command = tokens[:at], tokens[at + 1:]
    by_name: dict[str, Flag | Option] = {}
    for p in spec.params:
        if isinstance(p, Flag | Option):
            by_name.update({n: p for n in p.names})
    explicit: str | None = None
    positionals: list[str] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        i += 1
        if not token.startswith("-") or token == "-":
            positionals.append(token)
            continue
        name, eq, inline = token.partition("=")
        if not (eq and name.startswith("--")):
            name, eq = token, ""
        target = by_name.get(name)
        is_app = spec.app != NO_APP and name in APP_OPTIONS
        if target is None and not is_app:
            raise bad(spec, f"unknown option {token!r}")
        if isinstance(target, Flag):
            if eq:
                raise bad(spec, f"{name} takes no value")
            parsed.flags.add(target.key)
            continue
        if not eq:
            if i >= len(tokens):
                raise bad(spec, f"{name} needs a value")
            inline = tokens[i]
            i += 1
        if is_app:
            explicit = inline
        elif target is not None:
            parsed.options[target.key] = inline
    return parsed, positionals, explicit


def parse(spec: Spec, argv: Sequence[str], platform: Platform | None = None,
          key: Key | None = None) -> Parsed:
    """Parse ``argv`` by ``spec``; the app (``spec.app``) resolved for ``key``."""
    parsed, positionals, explicit = split_tokens(spec, argv)
    if spec.app != NO_APP:
        assert platform is not None and key is not None
        parsed.app = resolve_app(spec, platform, key, positionals, explicit)
    rest = spec.rest
    if rest is not None and not rest.optional and not parsed.command:
        raise bad(spec, f"give the command after --: {rest.metavar}")
    assign(spec, parsed, positionals)
    return parsed


def assign(spec: Spec, parsed: Parsed, positionals: list[str]) -> None:
    """Share the positionals among the declared arguments, left to right."""
    if not spec.accepts(len(positionals)):
        if spec.accepts(len(positionals) - 1) or not any(
                spec.accepts(n) for n in range(len(positionals) + 1, len(positionals) + 4)):
            raise bad(spec, f"unexpected argument {positionals[-1]!r}")
        raise bad(spec, f"missing {first_missing(spec, len(positionals)).metavar}")
    extra = len(positionals) - sum(a.count for a in spec.args if not a.optional)
    at = 0
    for arg in spec.args:
        take = 0 if arg.optional else arg.count
        if arg.optional and extra >= arg.count and not arg.many:
            take, extra = arg.count, extra - arg.count
        if arg.many:
            take, extra = take + extra, 0
        values = positionals[at:at + take]
        at += take
        for value in values:
            if not arg.matches(value):
                raise bad(spec, f"expected {arg.metavar}, got {value!r}")
        if values:
            parsed.values[arg.metavar] = values


def first_missing(spec: Spec, given: int) -> Arg:
    """The first required argument that ``given`` positionals leave without a value."""
    required = [a for a in spec.args if not a.optional]
    for arg in required:
        if given < arg.count:
            return arg
        given -= arg.count
    return required[-1]


def resolve_app(spec: Spec, platform: Platform, key: Key, positionals: list[str],
                explicit: str | None) -> App | None:
    """The app a command acts on; removes it from ``positionals``.

    One rule for every command: ``--app``/``-a`` anywhere always wins; else a first
    positional that names an app the key may use is the app (unless it surely is the
    first argument: it looks like one and the line fits without an app); else, if the key
    reaches exactly one app, that app, and every positional is an argument; else a
    one-line error asking for ``--app`` that lists only apps the key may use. When the
    count or the look of the positionals says the first must be the app, a first
    positional that is not an app the key may use is "not found", like a missing app.
    """
    if explicit is not None:
        return Access(platform, key).app(explicit)
    if positionals and not spec.looks_like_first_arg(positionals):
        first = positionals[0]
        app = Access(platform, key).usable(first)
        if app is not None:
            positionals.pop(0)
            return app
        if spec.must_be_app(positionals):
            return Access(platform, key).app(first)  # "not found": the same either way
    if spec.app == APP_OR_ALL and not positionals:
        return None
    return only_app(platform, key)


def only_app(platform: Platform, key: Key) -> App:
    """The key's one app, else a one-line error listing only the apps it may use."""
    apps = Access(platform, key).reachable()
    if len(apps) == 1:
        return apps[0]
    if not apps:
        raise UserError("you have no apps yet: push one, or name it with --app APP")
    listed = ", ".join(a.name for a in apps[:10]) + (", ..." if len(apps) > 10 else "")
    raise UserError(f"which app? name it with --app APP (one of: {listed})")


Handler = Callable[..., int | None]
