"""The evaluate stage and its quality gate through the real CLI: a perfect "generator" (a copy of the real
train split) passes the default thresholds (and is fully memorized, which the optional memorization check
stops); noise images fail it with the failed checks named, and then are neither published nor released, while
the report says why."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from synthdata.dataset import DatasetWriter
from tests.conftest import run_cli, write_params

pytestmark = pytest.mark.e2e

GATE = {"max_fid_ratio": 8.0, "min_acc_ratio": 0.9}
CLASSIFIER = {"width": 8, "feature_dim": 16, "steps": 200, "batch_size": 64, "eval_every": 50}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gate")
    params = write_params(tmp, generators=["cgan"], gate=GATE, evaluate={"kid_subsets": 5, "classifier": CLASSIFIER})
    for stage in ("prepare", "reference"):
        result = run_cli(stage, "--params", str(params))
        assert result.returncode == 0, result.stderr
    return tmp, params


def test_evaluate_needs_the_reference_stage(tmp_path):
    params = write_params(tmp_path)
    assert run_cli("prepare", "--params", str(params)).returncode == 0
    result = run_cli("evaluate", "--params", str(params), "--generator", "cgan")
    assert result.returncode == 2 and "run 'synthdata reference' first" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_gate_passes_a_perfect_generator(prepared):
    tmp, params = prepared
    shutil.copytree(tmp / "data/prepared/train", tmp / "data/synthetic/cgan", dirs_exist_ok=True)
    result = run_cli("evaluate", "--params", str(params), "--generator", "cgan")
    assert result.returncode == 0, result.stderr
    out = tmp / "data/evaluation/cgan"
    metrics = json.loads((out / "metrics.json").read_text())
    assert json.loads((out / "gate.json").read_text())["passed"] is True and metrics["gate_passed"] is True
    assert metrics["fid"] == pytest.approx(metrics["fid_floor"], rel=1e-9)  # same images, same protocol
    assert metrics["acc_synthetic"] == pytest.approx(metrics["acc_real"])  # same data, same seeds
    assert metrics["precision"] > 0.5 and metrics["coverage"] > 0.5
    assert metrics["memorized_fraction"] == 1.0  # every image is a train image: distance 0 in both spaces
    assert 0.0 < metrics["memorized_fraction_floor"] <= 0.03  # held-out real images, by the same rule
    assert (out / "memorized.png").is_file() and pd.read_csv(out / "memorized.csv")["distance"].max() == 0.0


def test_a_memorizing_generator_fails_the_optional_gate_and_is_not_published(prepared, tmp_path):
    tmp, _ = prepared
    params = write_params(
        tmp,
        generators=["cgan"],
        gate={**GATE, "max_memorized_fraction": 0.05},
        evaluate={"kid_subsets": 5, "classifier": CLASSIFIER},
    )
    shutil.rmtree(tmp / "data/synthetic/cgan", ignore_errors=True)
    shutil.copytree(tmp / "data/prepared/train", tmp / "data/synthetic/cgan")  # a generator that copies
    result = run_cli("evaluate", "--params", str(params), "--generator", "cgan")
    assert result.returncode == 0, result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert "quality gate FAILED: memorized_fraction 1.000 (limit <= 0.05" in line
    gate = json.loads((tmp / "data/evaluation/cgan/gate.json").read_text())
    assert [c["check"] for c in gate["checks"] if not c["passed"]] == ["memorized_fraction"]
    assert run_cli("publish", "--params", str(params)).returncode == 0
    manifest = json.loads((tmp / "data/published/manifest.json").read_text())
    assert manifest["published"] is False and "memorized_fraction" in json.dumps(manifest)


def test_gate_stops_noise_images_from_being_published(prepared):
    tmp, params = prepared
    syn = tmp / "data/synthetic/cgan"
    shutil.rmtree(syn, ignore_errors=True)
    rng = np.random.default_rng(0)
    writer = DatasetWriter(syn, [str(i) for i in range(10)], workers=1)
    writer.add(
        rng.integers(0, 256, (300, 1, 8, 8), dtype=np.uint8),
        np.arange(300) % 10,
        [f"noise-{i}" for i in range(300)],
        split="train",
        source="synthetic",
        generator="cgan",
        checkpoint_sha256="0" * 64,
        seeds=np.arange(300),
    )
    writer.close("# noise\n")
    result = run_cli("evaluate", "--params", str(params), "--generator", "cgan")
    assert result.returncode == 0, result.stderr  # the verdict is data: publish acts on it
    line = result.stderr.strip().splitlines()[-1]
    assert "quality gate FAILED" in line and "fid_ratio" in line and "acc_ratio" in line
    out = tmp / "data/evaluation/cgan"
    gate = json.loads((out / "gate.json").read_text())
    assert gate["passed"] is False and {c["check"] for c in gate["checks"] if not c["passed"]} == {
        "fid_ratio",
        "acc_ratio",
    }
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["fid"] > GATE["max_fid_ratio"] * metrics["fid_floor"]
    assert metrics["acc_synthetic"] < 0.5 and metrics["n_synthetic"] == 300
    assert metrics["memorized_fraction"] == 0.0
    assert len(pd.read_csv(out / "per_class.csv")) == 10

    assert run_cli("publish", "--params", str(params)).returncode == 0
    manifest = json.loads((tmp / "data/published/manifest.json").read_text())
    assert manifest["published"] is False and "no generator passed" in manifest["reason"]
    assert not (tmp / "data/published/dataset").exists()
    assert run_cli("report", "--params", str(params)).returncode == 0
    assert "**Nothing published.**" in (tmp / "data/report/report.md").read_text()
    release = run_cli("release", "--params", str(params))
    assert release.returncode == 3 and "nothing to release" in release.stderr and "fid_ratio" in release.stderr
    assert len(release.stderr.strip().splitlines()) == 1


def test_evaluate_reads_the_real_features_that_reference_made_once(prepared):
    import torch

    from synthdata import features
    from synthdata.errors import SynthdataError
    from synthdata.params import load_params
    from synthdata.protocol import load_splits

    _, path = prepared
    params, cpu = load_params(path), torch.device("cpu")
    splits, extractor = load_splits(params), features.build(params, cpu)
    real = features.load_real(extractor, splits, params)
    for split in features.REAL_SPLITS:
        assert np.array_equal(real[split], extractor(splits[split].images))
    other = load_params(path, {"evaluate.batch_size": 7})  # another batching: not these features
    with pytest.raises(SynthdataError, match="made with another batch") as err:
        features.load_real(features.build(other, cpu), splits, other)
    assert "run 'synthdata reference' again" in str(err.value) and "\n" not in str(err.value)
