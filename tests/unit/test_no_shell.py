"""Issue 7, point 7: no shell, no eval anywhere in gitpaas/ (argument lists only)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "gitpaas"
FORBIDDEN_TEXT = re.compile(r"shell\s*=\s*True|os\.system\s*\(|os\.popen\s*\(")
FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__"}


def sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_the_scan_sees_the_package():
    assert len(sources()) > 30


def test_no_shell_true_os_system_or_popen():
    hits = [f"{p.relative_to(PACKAGE)}:{n}: {line.strip()}"
            for p in sources() for n, line in enumerate(p.read_text().splitlines(), 1)
            if FORBIDDEN_TEXT.search(line)]
    assert hits == []


def test_no_eval_or_exec_calls():
    hits = []
    for path in sources():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id in FORBIDDEN_CALLS):
                hits.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {node.func.id}(")
    assert hits == []


def test_subprocess_calls_take_argument_lists():
    """Every subprocess call passes a list (or a name bound to one), never a string."""
    hits = []
    for path in sources():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Name)
                    and node.func.value.id == "subprocess" and node.args):
                continue
            first = node.args[0]
            if isinstance(first, ast.Constant | ast.JoinedStr | ast.BinOp):
                hits.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert hits == []


def test_the_scan_would_catch_them():
    bad = "import subprocess, os\nsubprocess.run('ls', shell=True)\nos.system('id')\neval('1')\n"
    assert len(FORBIDDEN_TEXT.findall(bad)) == 2
    calls = [n for n in ast.walk(ast.parse(bad)) if isinstance(n, ast.Call)
             and isinstance(n.func, ast.Name) and n.func.id in FORBIDDEN_CALLS]
    assert len(calls) == 1
