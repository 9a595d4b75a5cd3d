"""What ``evaluate`` leaves for publishing, and what ``publish`` leaves for ``report`` and ``release``: the
per-generator gate verdicts and scores (``candidates``) and the published manifest (``read_manifest``)."""

from __future__ import annotations

import json
from pathlib import Path

from synthdata.errors import SynthdataError
from synthdata.params import Params

MANIFEST = "manifest.json"
DATASET = "dataset"
SCORES = ("fid", "fid_floor", "fid_ratio", "kid", "precision", "recall", "density", "coverage",
          "acc_real", "acc_real_std", "acc_synthetic", "acc_synthetic_std", "acc_augmented", "acc_augmented_std",
          "n_synthetic", "n_train", "n_test", "feature_extractor", "feature_extractor_sha256",
          "filter_acceptance", "class_fid_max_over_median",
          "class_fid_ratio_max_over_median")


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
        gate, metrics = _read_json(folder / "gate.json", "evaluate"), _read_json(folder / "metrics.json", "evaluate")
        failed = [f"{c['check']} {c['value']:.3f} (limit {c['op']} {c['limit']})" for c in gate["checks"]
                  if not c["passed"]]
        rows.append({"generator": name, "passed": bool(gate["passed"]), "failed_checks": failed,
                     "checkpoint_sha256": gate["checkpoint_sha256"],
                     "scores": {k: metrics.get(k) for k in SCORES}})
    return rows

def read_manifest(params: Params) -> dict:
    return _read_json(Path(params.paths.published) / MANIFEST, "publish")
