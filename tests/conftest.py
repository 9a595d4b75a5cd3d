"""Shared fixtures: tiny parameter files with every path under a temporary folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]

TINY_TRAIN = {
    "seed": 0, "device": "cpu", "threads": 1, "checkpoint_every": 3, "log_every": 1,
    "cgan": {"steps": 6, "batch_size": 16, "latent_dim": 8, "width": 8, "ema_start": 2},
    "cvae": {"steps": 6, "batch_size": 16, "latent_dim": 4, "width": 8, "ema_start": 2},
}

TINY_CLASSIFIER = {"width": 8, "feature_dim": 16, "steps": 30, "batch_size": 64, "eval_every": 10}


def tiny_params(tmp: Path, **sections) -> dict:
    params = {
        "generators": ["cgan", "cvae"],
        "paths": {k: str(tmp / "data" / k)
                  for k in ("prepared", "models", "synthetic", "augmented", "reference", "evaluation")},
        "data": {"source": "sklearn-digits"},
        "prepare": {"seed": 0},
        "train": TINY_TRAIN,
        "sample": {"seed": 7, "per_class": 3, "batch_size": 8},
        "evaluate": {"kid_subsets": 5, "classifier": TINY_CLASSIFIER},
        "gate": {"max_fid_ratio": 1e6, "min_acc_ratio": 0.0},  # tiny generators are bad; gate tests set their own
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(params.get(key), dict):
            params[key] = {**params[key], **value}
        else:
            params[key] = value
    return params


def write_params(tmp: Path, **sections) -> Path:
    path = tmp / "params.yaml"
    path.write_text(yaml.safe_dump(tiny_params(tmp, **sections), sort_keys=False))
    return path


@pytest.fixture
def params_file(tmp_path: Path) -> Path:
    return write_params(tmp_path)


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the real console entry point in a subprocess (exit code, stdout, stderr)."""
    return subprocess.run([sys.executable, "-m", "synthdata", *args], cwd=cwd or REPO,
                          capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def make_npz(path: Path, n_per_class: int = 6, classes: int = 3, size: int = 8, **extra) -> Path:
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(classes), n_per_class)
    x = (rng.random((len(y), size, size)) * 255).astype(np.uint8)
    np.savez(path, x=x, y=y, **extra)
    return path
