"""DVC code dependencies that cannot go stale: each stage's ``synthdata/...`` deps in ``dvc.yaml`` are exactly
the modules its command (``python -m synthdata <stage>``) imports, transitively, read from the import graph.

A package that is imported counts whole (its registry imports every module in it), as ``dvc.yaml`` lists it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

PKG = REPO / "synthdata"


def _module_path(dotted: str) -> Path | None:
    """The file (or package folder) of a ``synthdata...`` module, else None."""
    rel = Path(*dotted.split("."))
    if dotted == "synthdata":
        return PKG / "__init__.py"
    if (REPO / rel).is_dir():
        return REPO / rel
    if (REPO / rel).with_suffix(".py").is_file():
        return (REPO / rel).with_suffix(".py")
    return None


def _imports(file: Path) -> set[Path]:
    """The synthdata modules one file imports (at any depth of the file: function-level imports count)."""
    found: set[Path] = set()
    for node in ast.walk(ast.parse(file.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            if name.split(".")[0] == "synthdata" and (path := _module_path(name)) is not None:
                found.add(path)
    return found


def _top(path: Path) -> Path:
    """A module inside a sub-package stands for the whole sub-package (synthdata/generators, ...)."""
    rel = path.relative_to(PKG)
    return PKG / rel.parts[0] if len(rel.parts) > 1 or path.is_dir() else path


def closure(stage: str) -> set[str]:
    """Every synthdata file or sub-package ``python -m synthdata <stage>`` imports, transitively."""
    todo = [PKG / "__init__.py", PKG / "__main__.py", PKG / f"{stage}.py"]
    seen: set[Path] = set()
    while todo:
        unit = _top(todo.pop())
        if unit in seen:
            continue
        seen.add(unit)
        files = sorted(unit.rglob("*.py")) if unit.is_dir() else [unit]
        for file in files:
            todo.extend(_imports(file))
            if file.name == "__init__.py" and file.parent != PKG:
                todo.append(file.parent)
    return {p.relative_to(REPO).as_posix() for p in seen}


def declared() -> dict[str, set[str]]:
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    out = {}
    for name, stage in stages.items():
        body = stage.get("do", stage)
        out[name] = {d for d in body.get("deps", []) if isinstance(d, str) and d.startswith("synthdata")}
    return out


@pytest.mark.parametrize("stage", sorted(declared()))
def test_code_deps_are_exactly_the_import_closure(stage):
    want, have = closure(stage), declared()[stage]
    assert not want - have, f"dvc.yaml stage {stage!r} misses code deps {sorted(want - have)}"
    assert not have - want, f"dvc.yaml stage {stage!r} lists code it does not import {sorted(have - want)}"


def test_the_walker_sees_function_level_and_package_imports():
    deps = closure("release")  # release imports dvc inside functions and locks at the top
    assert {"synthdata/release.py", "synthdata/locks.py", "synthdata/cli.py", "synthdata/generators"} <= deps
    assert "synthdata/evaluate.py" not in closure("prepare")  # the CLI imports only the stage it runs


def write_deps() -> None:
    """Rewrite each stage's ``synthdata/...`` deps in dvc.yaml to its import closure, keeping everything else
    (``python -m tests.unit.test_pipeline_deps --write``)."""
    lines, out, stage = (REPO / "dvc.yaml").read_text().splitlines(), [], None
    for line in lines:
        stripped = line.split("#")[0].strip()
        if line.startswith("  ") and not line.startswith("   ") and stripped.endswith(":"):
            stage = stripped[:-1]
        if stripped.startswith("- synthdata"):
            indent = line[: len(line) - len(line.lstrip())]
            if stage is not None:
                out += [f"{indent}- {dep}" for dep in sorted(closure(stage))]
                stage = None  # written once, where its first code dep was
            continue
        out.append(line)
    (REPO / "dvc.yaml").write_text("\n".join(out) + "\n")


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["--write"]:
        write_deps()
