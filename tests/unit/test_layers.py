"""Issue 13: commands parse, call one service function and print; they never touch Redis,
Docker or the store themselves (docs/architecture.md draws these layers).

Read from the source: the only component of the platform a command module names is its
``settings``; it imports no adapter module (store, runtime, routes, datastores, the edge's
certificate store, Redis, Docker); the services are what it imports to act.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

COMMANDS = Path(__file__).resolve().parents[2] / "gitpaas" / "commands"
# What a command may read of ``platform`` (its own words: domain, instance, prefixes).
PLATFORM_ALLOWED = {"settings"}
# Modules a command must not import: the adapters (the services' business). ``store`` is
# allowed for its row types only (App, Key), checked below.
ADAPTERS = ("runtime", "routes", "datastores", "registry", "deploy", "reconcile",
            "edge.certs", "edge.appsettings", "edge.acme", "git", "build", "locks")
THIRD_PARTY = ("redis", "docker", "pymysql", "psycopg", "sqlite3")


def modules() -> list[Path]:
    return sorted(p for p in COMMANDS.glob("*.py") if p.name != "__init__.py")


def platform_uses(tree: ast.AST) -> set[str]:
    """``X`` of every ``<something>.platform.X`` and ``platform.X``."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            inner = node.value
            named = (isinstance(inner, ast.Attribute) and inner.attr == "platform") or (
                isinstance(inner, ast.Name) and inner.id == "platform")
            if named:
                found.add(node.attr)
    return found


def imports(tree: ast.AST) -> list[tuple[str, list[str]]]:
    """(module as written relative to ``gitpaas``, names) of each import."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level in (0, 2):  # from x import y, from ..x import y
                found.append((module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names]
    return found


@pytest.mark.parametrize("path", modules(), ids=lambda p: p.name)
def test_a_command_reaches_no_component_of_the_platform(path):
    used = platform_uses(ast.parse(path.read_text()))
    assert used <= PLATFORM_ALLOWED, (
        f"{path.name} reaches platform.{sorted(used - PLATFORM_ALLOWED)}: call a service")


@pytest.mark.parametrize("path", modules(), ids=lambda p: p.name)
def test_a_command_imports_no_adapter(path):
    for module, names in imports(ast.parse(path.read_text())):
        top = module.split(".")[0]
        assert top not in THIRD_PARTY, f"{path.name} imports {module}"
        assert not any(module == a or module.startswith(a + ".") for a in ADAPTERS), \
            f"{path.name} imports {module}: that is a service's business"
        if module == "store":
            assert set(names) <= {"App", "Key"}, f"{path.name} imports {names} of the store"
