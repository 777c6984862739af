"""The code stays readable: no function a reader cannot hold in their head, no class with more
than one job's worth of code, unless its docstring says why it must be so."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "webhook_mcp"
MAX_FUNCTION_LINES = 60
MAX_CLASS_LINES = 300
# A docstring containing this phrase explains why the definition is longer than the limits.
EXCUSE = "Longer than usual because"


def _length(node: ast.AST) -> int:
    start = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])  # type: ignore[attr-defined]
    return int(node.end_lineno) - start + 1  # type: ignore[attr-defined]


def _oversized(root: Path = SRC) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                limit = MAX_FUNCTION_LINES
            elif isinstance(node, ast.ClassDef):
                limit = MAX_CLASS_LINES
            else:
                continue
            if _length(node) > limit and EXCUSE not in (ast.get_docstring(node) or ""):
                where = path.relative_to(root.parent)
                found.append(f"{where}:{node.lineno} {node.name} is {_length(node)} lines (limit {limit})")
    return found


def test_functions_and_classes_fit_in_a_readers_head() -> None:
    assert _oversized() == []


def test_the_check_finds_an_oversized_function_unless_it_says_why(tmp_path: Path) -> None:
    package = tmp_path / "package"
    package.mkdir()
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    (package / "long.py").write_text(f"def long():\n{body}\n")
    (package / "excused.py").write_text(f'def excused():\n    """{EXCUSE} it is a table."""\n{body}\n')
    assert _oversized(package) == [f"package/long.py:1 long is {MAX_FUNCTION_LINES + 1} lines (limit 60)"]
