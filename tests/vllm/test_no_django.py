"""The launcher runs on GPU hosts without Django: no module of the package may import it."""

from __future__ import annotations

import ast

from tests.vllm.conftest import PACKAGE_DIR


def imported_modules(source: str) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_no_module_of_the_launcher_imports_django() -> None:
    files = sorted(PACKAGE_DIR.rglob("*.py"))
    assert len(files) >= 8
    offenders = {
        str(path.relative_to(PACKAGE_DIR)): sorted(
            m for m in imported_modules(path.read_text()) if m.split(".")[0] == "django"
        )
        for path in files
    }
    assert {k: v for k, v in offenders.items() if v} == {}
