"""What ``evaluate`` leaves for publishing, and what ``publish`` leaves for ``report`` and ``release``: the
per-generator gate verdicts and scores (``candidates``: the registered metrics' values) and the published
manifest (``read_manifest``)."""

from __future__ import annotations

import json
from pathlib import Path

from synthdata.errors import SynthdataError
from synthdata.metrics.registry import Scores
from synthdata.params import Params

MANIFEST = "manifest.json"
DATASET = "dataset"


def _read_json(path: Path, stage: str) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise SynthdataError(f"{path} not found: run 'synthdata {stage}' (or 'dvc repro') first") from None
    except json.JSONDecodeError as exc:
        raise SynthdataError(f"{path} is not valid JSON ({exc.msg}): run 'synthdata {stage}' again") from None


def candidates(params: Params) -> list[dict]:
    """One row per generator: its gate verdict, failed checks and headline scores."""
    rows = []
    for name in params.generators:
        folder = Path(params.paths.evaluation) / name
        gate, scores = _read_json(folder / "gate.json", "evaluate"), Scores.read(folder, name)
        failed = [
            f"{c['check']} {c['value']:.3f} (limit {c['op']} {c['limit']})" for c in gate["checks"] if not c["passed"]
        ]
        rows.append(
            {
                "generator": name,
                "passed": bool(gate["passed"]),
                "failed_checks": failed,
                "checkpoint_sha256": gate["checkpoint_sha256"],
                "scores": scores.values,
            }
        )
    return rows


def read_manifest(params: Params) -> dict:
    return _read_json(Path(params.paths.published) / MANIFEST, "publish")
