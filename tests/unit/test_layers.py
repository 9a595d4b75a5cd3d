"""The layering of pyproject.toml's import-linter contracts holds, and covers every module."""

import subprocess
import sys
import tomllib
from pathlib import Path

from tests.conftest import REPO

ENTRY = {"synthdata", "synthdata.cli", "synthdata.__main__"}


def test_import_contracts_are_kept():
    lint = Path(sys.executable).parent / "lint-imports"
    proc = subprocess.run(
        [str(lint), "--config", str(REPO / "pyproject.toml")], cwd=REPO, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "3 kept, 0 broken" in proc.stdout


def test_every_module_is_an_entry_point_a_stage_or_library():
    contracts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    stages = set(next(c for c in contracts if c["type"] == "independence")["modules"])
    library = set(next(c for c in contracts if c["type"] == "forbidden")["source_modules"])
    light = set(next(c for c in contracts if "dvc" in c.get("forbidden_modules", ()))["source_modules"])
    top = {
        "synthdata." + (p.stem if p.is_file() else p.name)
        for p in (REPO / "synthdata").iterdir()
        if (p.suffix == ".py" and p.stem not in ("__init__",)) or (p / "__init__.py").is_file()
    }
    unplaced = top - stages - library - ENTRY
    assert not unplaced, f"modules in no layer of pyproject.toml's import contracts: {sorted(unplaced)}"
    # the stages run on a machine without DVC or Prefect: only release (the DVC remote's stage) may import them
    assert top - light - ENTRY == {"synthdata.release"}
