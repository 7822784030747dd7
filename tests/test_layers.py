"""Layers without climbs: the infrastructure packages import nothing above them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "metaprompt"
# package -> the metaprompt packages it may import (module level or inside functions)
ALLOWED = {"scale": {"scale"}}


def metaprompt_imports(path: Path) -> set[str]:
    """The first component after ``metaprompt.`` of every import in ``path`` (relative imports: this package)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                found.add(path.relative_to(PACKAGE).parts[0])
            elif node.module and node.module.split(".")[0] == "metaprompt":
                parts = node.module.split(".")
                found.add(parts[1] if len(parts) > 1 else node.names[0].name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "metaprompt":
                    found.add(parts[1] if len(parts) > 1 else "")
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_lies_below_it(package):
    files = sorted((PACKAGE / package).rglob("*.py"))
    assert files
    climbs = {str(f.relative_to(PACKAGE)): sorted(metaprompt_imports(f) - ALLOWED[package]) for f in files}
    assert not {f: c for f, c in climbs.items() if c}, f"{package}/ imports from above it: {climbs}"


def test_the_import_scan_sees_function_level_and_relative_imports(tmp_path):
    probe = PACKAGE / "scale" / "zero.py"
    assert "scale" in metaprompt_imports(probe)
    fake = tmp_path / "x.py"
    fake.write_text("def f():\n    from metaprompt.modules.base import g\n    import metaprompt.backbones\n")
    assert metaprompt_imports(fake) == {"modules", "backbones"}
