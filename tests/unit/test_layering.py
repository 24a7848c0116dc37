"""Imports flow one way: app.py, pages/ -> portal -> audit -> portal.db/models.

Only the UI layer (app.py, pages/, portal/auth.py, portal/streamlit_server.py, portal/ui/) may
import streamlit; pages never import sqlalchemy; audit never imports the portal's UI or domain
modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UI_FILES = {"app.py", "portal/auth.py", "portal/streamlit_server.py"}
UI_DIRS = ("pages/", "portal/ui/")
AUDIT_MAY_IMPORT = {
    "portal.models",
    "portal.db",
    "portal.errors",
    "portal.config",
    "portal.wording",
}


def _python_files() -> list[Path]:
    files = [ROOT / "app.py"]
    for folder in ("pages", "portal", "audit"):
        files += sorted((ROOT / folder).rglob("*.py"))
    return [f for f in files if f.exists()]


def imported_modules(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
            modules |= {f"{node.module}.{alias.name}" for alias in node.names}
    return modules


def _top(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _is_ui(rel: str) -> bool:
    return rel in UI_FILES or rel.startswith(UI_DIRS)


@pytest.mark.parametrize("path", _python_files(), ids=_rel)
def test_import_direction(path: Path) -> None:
    rel, modules = _rel(path), imported_modules(path)
    if not _is_ui(rel):
        assert "streamlit" not in _top(modules), f"{rel} imports streamlit; only the UI may"
        assert "streamlit_authenticator" not in _top(modules) or rel == "portal/auth.py"
    if rel.startswith("pages/"):
        assert "sqlalchemy" not in _top(modules), f"{rel}: pages must not import sqlalchemy"
    if rel.startswith("audit/"):
        portal_imports = {m for m in modules if m.split(".")[0] == "portal"}
        allowed = {m for m in portal_imports if any(m.startswith(a) for a in AUDIT_MAY_IMPORT)}
        assert portal_imports <= allowed | {"portal"}, (
            f"{rel} imports {sorted(portal_imports - allowed)}: audit may only use "
            f"{sorted(AUDIT_MAY_IMPORT)}"
        )


def test_checker_catches_a_violation(tmp_path: Path) -> None:
    """The walker sees both import forms, so a page importing sqlalchemy cannot slip by."""
    page = tmp_path / "page.py"
    page.write_text("import os\nfrom sqlalchemy.orm import Session\nimport streamlit as st\n")
    assert _top(imported_modules(page)) == {"os", "sqlalchemy", "streamlit"}
