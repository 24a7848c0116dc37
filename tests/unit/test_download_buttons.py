"""Every download button downloads without rerunning the page (``on_click="ignore"``).

A rerun after a download redraws the page for nothing; on the Edit page it redrew the grid
under the next click, which then landed on a grid being replaced.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def download_buttons(path: Path) -> list[ast.Call]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "download_button"
    ]


def ignores_the_click(call: ast.Call) -> bool:
    return any(
        k.arg == "on_click" and isinstance(k.value, ast.Constant) and k.value.value == "ignore"
        for k in call.keywords
    )


def test_no_download_button_reruns_the_page() -> None:
    files = [ROOT / "app.py", *sorted((ROOT / "pages").glob("*.py"))]
    files += sorted((ROOT / "portal").rglob("*.py"))
    calls = [(path, call) for path in files for call in download_buttons(path)]
    assert len(calls) >= 5  # Upload (3), Edit, the exports: the walk finds them
    rerunning = [
        f"{path.relative_to(ROOT)}:{call.lineno}"
        for path, call in calls
        if not ignores_the_click(call)
    ]
    assert rerunning == []
