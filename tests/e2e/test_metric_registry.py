"""Adding a metric is one function: a toy metric registered here (no other file changes) reaches
``metrics.json``, the published dataset card, the manifest and the report through the real stages."""

from __future__ import annotations

import json

import numpy as np
import pytest

from synthdata import evaluate, publish, report
from synthdata.metrics import registry
from synthdata.metrics.registry import Column, Inputs, Result, register_metric
from synthdata.params import load_params
from tests.conftest import run_cli, write_params

pytestmark = pytest.mark.e2e


def _brightness_gap(x: Inputs) -> Result:
    """Mean grey level of the synthetic images minus that of the real test split."""
    syn, test = x.datasets["synthetic"].images, x.datasets["test"].images
    return Result(
        {"brightness_gap": float(syn.double().mean() - test.double().mean())}, counts={"brightness_n": len(syn)}
    )


def test_a_registered_metric_reaches_metrics_card_manifest_and_report(tmp_path):
    params_file = write_params(tmp_path, generators=["cgan"])
    for argv in (
        ["prepare"],
        ["reference"],
        ["filter"],
        ["train", "--generator", "cgan"],
        ["sample", "--generator", "cgan"],
    ):
        result = run_cli(*argv, "--params", str(params_file))
        assert result.returncode == 0, result.stderr
    register_metric("toy_brightness", columns=(Column("brightness_gap", "brightness gap", digits=4),))(_brightness_gap)
    try:
        params = load_params(params_file)
        evaluate.run(params, "cgan")
        publish.run(params)
        report.run(params)
    finally:
        registry.unregister_metric("toy_brightness")

    data = tmp_path / "data"
    metrics = json.loads((data / "evaluation/cgan/metrics.json").read_text())
    from synthdata.dataset import load_dataset

    syn, test = load_dataset(data / "synthetic/cgan"), load_dataset(data / "prepared/test")
    expected = float(syn.images.double().mean() - test.images.double().mean())
    assert metrics["brightness_gap"] == pytest.approx(expected, abs=1e-12)
    assert metrics["brightness_n"] == len(syn.labels)
    assert "fid" in metrics and "acc_synthetic" in metrics  # the built-in metrics still ran
    manifest = json.loads((data / "published/manifest.json").read_text())
    assert manifest["published"] and manifest["scores"]["brightness_gap"] == metrics["brightness_gap"]
    card = (data / "published/dataset/README.md").read_text()
    assert f"| brightness_gap | {metrics['brightness_gap']:.4f} |" in card
    md = (data / "report/report.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| generator | gate |"))
    assert header.rstrip(" |").endswith("brightness gap")
    row = next(line for line in md.splitlines() if line.startswith("| cgan |"))
    assert row.rstrip(" |").endswith(f"{metrics['brightness_gap']:.4f}") and np.isfinite(metrics["brightness_gap"])
    assert "brightness_gap" not in registry.score_keys()  # unregistered again: nothing else changed
