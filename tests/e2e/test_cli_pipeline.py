"""End-to-end: the real CLI, real PyTorch training and sampling, on the embedded digits with tiny settings."""

from pathlib import Path

import pandas as pd
import pytest
import torch
import torchvision
import yaml

import synthdata
from tests.conftest import make_npz, run_cli, write_params

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pipe")
    params = write_params(tmp)
    for stage in ("prepare", "train", "filter", "reference", "sample", "evaluate", "publish", "report"):
        result = run_cli(stage, "--params", str(params))
        assert result.returncode == 0, stage + ": " + result.stderr
    return tmp, params


def test_there_is_one_orchestrator():
    """`dvc repro` (and the Prefect flow that runs it) orders the stages; the CLI has no 'all'."""
    result = run_cli("all")
    assert result.returncode == 2 and "invalid choice: 'all'" in result.stderr


def test_prepare_split_is_stratified_disjoint_and_deterministic(pipeline, tmp_path):
    tmp, params = pipeline
    metas = {s: pd.read_parquet(tmp / "data/prepared" / s / "metadata.parquet") for s in ("train", "val", "test")}
    assert sum(len(m) for m in metas.values()) == 1797
    hashes = [set(m["pixel_sha256"]) for m in metas.values()]
    origins = [set(m["origin"]) for m in metas.values()]
    assert not (origins[0] & origins[1]) and not (origins[0] & origins[2]) and not (origins[1] & origins[2])
    assert hashes[2] - hashes[0], "test split must hold images the train split does not"
    for m in metas.values():  # stratified: every class in every split, close to the overall share
        share = m["label_id"].value_counts(normalize=True)
        assert len(share) == 10 and share.max() - share.min() < 0.03
    again = write_params(tmp_path)
    assert run_cli("prepare", "--params", str(again)).returncode == 0
    other = pd.read_parquet(tmp_path / "data/prepared/train/metadata.parquet")
    assert other["origin"].tolist() == metas["train"]["origin"].tolist()


@pytest.mark.parametrize("name", ["cgan", "cvae"])
def test_trained_and_sampled_outputs(pipeline, name):
    tmp, _ = pipeline
    model_dir = tmp / "data/models" / name
    assert (model_dir / "checkpoint.pt").is_file() and (model_dir / "params.json").is_file()
    losses = pd.read_csv(model_dir / "losses.csv")
    assert losses["step"].tolist() == [1, 2, 3, 4, 5, 6]
    syn = tmp / "data/synthetic" / name
    meta = pd.read_parquet(syn / "metadata.parquet")
    assert len(meta) == 30 and meta["label_id"].value_counts().eq(3).all()
    assert (meta["generator"] == name).all() and meta["seed"].tolist() == list(range(7, 37))
    folder = torchvision.datasets.ImageFolder(str(syn))
    assert len(folder) == 30 and folder.classes == [str(i) for i in range(10)]
    data = synthdata.load_dataset(syn)
    assert data.images.shape == (30, 1, 8, 8) and data.images.dtype == torch.uint8
    # traceable per sample: the checkpoint and the seed remake each image bit for bit
    g = synthdata.load_generator(model_dir)
    assert meta["checkpoint_sha256"].eq(g.checkpoint_sha256).all()
    remade = g.generate(data.labels[[0, 17]].tolist()[:1], seed=int(meta["seed"][0]))
    assert torch.equal(remade[0], data.images[0])
    remade = g.generate([int(data.labels[17])], seed=int(meta["seed"][17]))
    assert torch.equal(remade[0], data.images[17])
    aug = pd.read_parquet(tmp / "data/augmented" / name / "metadata.parquet")
    n_real = len(pd.read_parquet(tmp / "data/prepared/train/metadata.parquet"))
    assert (aug["source"] == "real").sum() == n_real and (aug["source"] == "synthetic").sum() == 30
    assert len(torchvision.datasets.ImageFolder(str(tmp / "data/augmented" / name))) == n_real + 30
    assert "| **total** | **30** |" in (syn / "README.md").read_text()


def _elsewhere(params: Path, tmp_path: Path, **paths: str) -> Path:
    """A copy of ``params`` whose ``paths.<key>`` point into ``tmp_path`` (the other stages' inputs stay)."""
    raw = yaml.safe_load(params.read_text())
    raw["paths"].update({key: str(tmp_path / folder) for key, folder in paths.items()})
    other = tmp_path / "p.yaml"
    other.write_text(yaml.safe_dump(raw))
    return other


def test_sampling_is_reproducible_to_the_byte(pipeline, tmp_path):
    tmp, params = pipeline
    other = _elsewhere(params, tmp_path, synthetic="syn", augmented="aug")
    assert run_cli("sample", "--params", str(other), "--generator", "cgan").returncode == 0
    for f in sorted((tmp / "data/synthetic/cgan").rglob("*.png"))[:30]:
        rel = f.relative_to(tmp / "data/synthetic/cgan")
        assert (tmp_path / "syn/cgan" / rel).read_bytes() == f.read_bytes()


def _assert_clean_failure(result, needle):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert needle in lines[0], lines[0]


def _snapshot(root: Path) -> dict:
    """Every output file and its mtime (the stages' lock files beside the outputs are bookkeeping, not outputs)."""
    return {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file() and not p.name.endswith(".lock")}


@pytest.mark.parametrize(
    "command, edit, needle",
    [
        ("prepare", {"data": {"source": "image-folder", "path": "no/such/dir"}}, "no/such/dir: folder not found"),
        ("prepare", {"data": {"source": "npz", "path": "NPZ_BAD"}}, "out of range"),
        ("prepare", {"sample": {"per_class": 0}}, "sample.per_class"),
        ("prepare", {"sample": {"bogus": 1}}, "unknown key 'sample.bogus'"),
        ("sample", {"sample": {"counts": {"eleven": 2}}}, "unknown class 'eleven'"),
    ],
)
def test_bad_input_is_one_line_and_keeps_earlier_outputs(pipeline, tmp_path, command, edit, needle):
    tmp, params = pipeline
    raw = yaml.safe_load(params.read_text())
    for section, values in edit.items():
        if values.get("path") == "NPZ_BAD":
            bad = tmp_path / "bad.npz"
            import numpy as np

            np.savez(bad, x=np.zeros((6, 8, 8), np.uint8), y=np.array([0, 1, 2, 0, 1, -7]))
            values = {**values, "path": str(bad)}
        raw[section] = {**raw[section], **values}
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(raw))
    before = _snapshot(tmp / "data")
    _assert_clean_failure(run_cli(command, "--params", str(p)), needle)
    assert _snapshot(tmp / "data") == before


def test_bad_checkpoints_via_cli(pipeline, tmp_path):
    tmp, params = pipeline
    _assert_clean_failure(
        run_cli(
            "sample", "--params", str(params), "--generator", "cgan", "--checkpoint", str(tmp / "data/models/cvae")
        ),
        "from generator 'cvae', not 'cgan'",
    )
    broken = tmp_path / "checkpoint.pt"
    broken.write_bytes((tmp / "data/models/cgan/checkpoint.pt").read_bytes()[:1000])
    before = _snapshot(tmp / "data")
    _assert_clean_failure(
        run_cli("sample", "--params", str(params), "--generator", "cgan", "--checkpoint", str(broken)),
        "truncated or corrupt",
    )
    assert _snapshot(tmp / "data") == before


def test_too_few_images_to_split(tmp_path):
    npz = make_npz(tmp_path / "few.npz", n_per_class=4, classes=10)
    p = write_params(tmp_path, data={"source": "npz", "path": str(npz)})
    _assert_clean_failure(run_cli("prepare", "--params", str(p)), "cannot make a stratified split")


def test_single_class_and_empty_class_folders(tmp_path):
    npz = make_npz(tmp_path / "one.npz", classes=1)
    p = write_params(tmp_path, data={"source": "npz", "path": str(npz)})
    _assert_clean_failure(run_cli("prepare", "--params", str(p)), "at least 2 classes")
    (tmp_path / "imgs" / "a").mkdir(parents=True)
    (tmp_path / "imgs" / "b").mkdir()
    p = write_params(tmp_path, data={"source": "image-folder", "path": str(tmp_path / "imgs")})
    _assert_clean_failure(run_cli("prepare", "--params", str(p)), "class folder is empty")


REQUIRED_METRICS = {
    "fid",
    "fid_floor",
    "kid",
    "precision",
    "recall",
    "density",
    "coverage",
    "acc_real",
    "acc_real_std",
    "acc_synthetic",
    "acc_synthetic_std",
    "acc_augmented",
    "acc_augmented_std",
    "n_synthetic",
    "n_test",
    "feature_extractor",
    "fid_n",
}


@pytest.mark.parametrize("name", ["cgan", "cvae"])
def test_evaluation_outputs(pipeline, name):
    import json

    tmp, _ = pipeline
    out = tmp / "data/evaluation" / name
    metrics = json.loads((out / "metrics.json").read_text())
    assert REQUIRED_METRICS <= set(metrics)
    assert metrics["n_synthetic"] == 30 and metrics["fid_n"] == 30 and metrics["feature_extractor"] == "domain"
    assert metrics["n_test"] == len(pd.read_parquet(tmp / "data/prepared/test/metadata.parquet"))
    assert all(0 <= metrics[k] <= 1 for k in ("acc_real", "acc_synthetic", "acc_augmented", "precision"))
    assert metrics["fid"] > 0 and metrics["fid_floor"] > 0 and metrics["seeds"] == 3
    baseline = json.loads((tmp / "data/reference/baseline.json").read_text())
    assert metrics["acc_real"] == baseline["acc_real"] and len(baseline["real"]["per_seed"]) == 3
    per_class = pd.read_csv(out / "per_class.csv")
    assert per_class["class"].astype(str).tolist() == [str(i) for i in range(10)]
    assert (per_class["n_synthetic"] == 3).all()
    assert len(pd.read_csv(out / "confusion.csv")) == metrics["n_test"]
    for picture in ("samples.png", "per_class_fid.png", "accuracy.png", "confusion.png"):
        assert (out / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "gate.json").read_text())["passed"] is True
    assert json.loads((tmp / "data/reference/domain.json").read_text())["test_accuracy"] > 0


def test_reference_and_evaluate_outputs_are_byte_reproducible(pipeline, tmp_path):
    """The same inputs give the same bytes: no timing or other run-dependent value in any output."""
    tmp, params = pipeline
    again = _elsewhere(params, tmp_path, reference="reference", evaluation="evaluation")
    for stage in (["reference"], ["evaluate", "--generator", "cgan"]):
        result = run_cli(*stage, "--params", str(again))
        assert result.returncode == 0, result.stderr

    def files(root: Path) -> dict:  # params.json records the (different) paths; lock files are not outputs
        return {
            p.relative_to(root): p.read_bytes()
            for p in root.rglob("*")
            if p.is_file() and p.name != "params.json" and not p.name.endswith(".lock")
        }

    assert files(tmp_path / "reference") == files(tmp / "data/reference")
    assert files(tmp_path / "evaluation/cgan") == files(tmp / "data/evaluation/cgan")
