"""Every page file begins, after its imports, with the sign-in and role guard: a file under
``pages/`` can be opened by URL without app.py running, so nothing may come before the check."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGE_FILES = sorted((ROOT / "pages").glob("*.py"))
GUARDS = {"require", "require_session"}


def first_statement(path: Path) -> ast.stmt:
    body = ast.parse(path.read_text(), filename=str(path)).body
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            continue
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # the docstring
        return node
    raise AssertionError(f"{path.name} has no statements")


def guard_name(node: ast.stmt) -> str | None:
    value = node.value if isinstance(node, ast.Assign | ast.Expr) else None
    if isinstance(value, ast.Call):
        func = value.func
        if isinstance(func, ast.Name):
            return func.id
        if isinstance(func, ast.Attribute):
            return func.attr
    return None


def test_there_are_pages() -> None:
    assert PAGE_FILES


@pytest.mark.parametrize("path", PAGE_FILES, ids=lambda p: p.name)
def test_page_starts_with_the_guard(path: Path) -> None:
    node = first_statement(path)
    assert guard_name(node) in GUARDS, (
        f"{path.name}: the first statement after the imports must be "
        "`... = require(role)` or `require_session(role)` from portal.ui"
    )


def test_checker_sees_an_unguarded_page(tmp_path: Path) -> None:
    page = tmp_path / "page.py"
    page.write_text('"""Doc."""\nimport streamlit as st\nst.title("x")\nrequire("admin")\n')
    assert guard_name(first_statement(page)) == "title"
