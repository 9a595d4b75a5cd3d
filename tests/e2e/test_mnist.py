"""MNIST on a small subset of the real files: the MNIST source, the low-data protocol and classifier-filtered
sampling, end to end with real training, and what each stage may see (no leakage of val or test).

The subset (300 train and 50 test images per class, the first ones of each file) is written as gzip IDX
files, read by the same code as the full set in ``../shared/datasets/mnist``. The full-size quality
targets are measured by ``benchmarks/bench_mnist.py``, not here.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from synthdata import filter as filter_stage
from synthdata import filtering, prepare, sample, train
from synthdata.checkpoint import load_generator
from synthdata.dataset import SPLITS, check_disjoint, load_dataset, read_metadata
from synthdata.params import load_params
from synthdata.sources.mnist import FILES, read_idx
from tests.conftest import need_mnist, run_cli, tiny_params

pytestmark = pytest.mark.e2e

PER_CLASS = {"train": 300, "test": 50}
K = 20  # low-data protocol: train images per class


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    path.write_bytes(gzip.compress(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes(), mtime=0))


@pytest.fixture(scope="module")
def mnist_subset(tmp_path_factory) -> Path:
    mnist = need_mnist()
    out = tmp_path_factory.mktemp("mnist-subset")
    for split, n in PER_CLASS.items():
        images = read_idx(mnist / f"{FILES[(split, 'images')]}.gz")
        labels = read_idx(mnist / f"{FILES[(split, 'labels')]}.gz")
        keep = np.sort(np.concatenate([np.flatnonzero(labels == c)[:n] for c in range(10)]))
        _write_idx(out / f"{FILES[(split, 'images')]}.gz", images[keep])
        _write_idx(out / f"{FILES[(split, 'labels')]}.gz", labels[keep])
    return out


def _params(tmp: Path, mnist: Path, file: str = "params.yaml", **over) -> Path:
    sections = {
        "generators": ["cvae"],
        "data": {"source": "mnist", "path": str(mnist)},
        "prepare": {"seed": 0, "train_per_class": K},
        "runtime": {"device": "cpu", "threads": 2},
        "train": {
            "seed": 0,
            "checkpoint_every": 1000,
            "log_every": 50,
            "cvae": {
                "steps": 600,
                "batch_size": 32,
                "latent_dim": 8,
                "width": 16,
                "lr": 0.003,
                "ema_decay": 0.9,
                "ema_start": 50,
            },
        },
        "sample": {"seed": 3, "per_class": 6, "batch_size": 16},
        "filter": {
            "enabled": True,
            "min_confidence": 0.0,
            "max_draws": 200,
            "classifier": {"width": 8, "feature_dim": 16, "steps": 300, "batch_size": 64},
        },
    }
    for key, value in over.items():
        sections[key] = {**sections.get(key, {}), **value} if isinstance(value, dict) else value
    path = tmp / file
    path.write_text(yaml.safe_dump(tiny_params(tmp, **sections), sort_keys=False))
    return path


def _pixels(images: torch.Tensor) -> set[str]:
    return {hashlib.sha256(x.numpy().tobytes()).hexdigest() for x in images}


def test_mnist_source_and_low_data_split(mnist_subset: Path, tmp_path: Path):
    """The official test images form the test split; the low-data protocol keeps exactly K train images per
    class and changes nothing else (val and test are those of the full-data split)."""
    (tmp_path / "full").mkdir()
    full = load_params(_params(tmp_path / "full", mnist_subset, prepare={"train_per_class": None}))
    low = load_params(_params(tmp_path, mnist_subset))
    s_full = prepare.run(full)
    prepare.run(low)
    assert s_full["source"] == "mnist" and s_full["n_test"] == 10 * PER_CLASS["test"]
    assert s_full["n_train"] + s_full["n_val"] + s_full["duplicates_dropped"] == 10 * PER_CLASS["train"]
    splits = {s: load_dataset(Path(low.paths.prepared) / s) for s in SPLITS}
    check_disjoint(splits)  # raises if any image sits in two splits
    assert torch.bincount(splits["train"].labels, minlength=10).tolist() == [K] * 10
    assert splits["test"].metadata["origin"].str.startswith("mnist-test:").all()
    assert not splits["train"].metadata["origin"].str.startswith("mnist-test:").any()
    for split in ("val", "test"):
        assert _pixels(splits[split].images) == _pixels(load_dataset(Path(full.paths.prepared) / split).images)
    full_train = _pixels(load_dataset(Path(full.paths.prepared) / "train").images)
    assert _pixels(splits["train"].images) < full_train  # a subset of the full-data train split


@pytest.fixture(scope="module")
def filtered_run(mnist_subset: Path, tmp_path_factory) -> Path:
    """Low-data prepare, then filter, train and filtered sample with the val and test splits moved away (so
    nothing in them can be read)."""
    root = tmp_path_factory.mktemp("filtered")
    params = load_params(_params(root, mnist_subset))
    prepare.run(params)
    prepared = Path(params.paths.prepared)
    (root / "hidden").mkdir()
    for split in ("val", "test"):
        shutil.move(prepared / split, root / "hidden" / split)
    (root / "filter-run.json").write_text(json.dumps(filter_stage.run(params)))
    train.run(params, "cvae", progress=False)
    sample.run(params, "cvae", progress=False)
    return root


def test_filtered_sampling_sees_only_the_low_data_train_split(mnist_subset: Path, filtered_run: Path):
    """filter, train and sample ran without the val and test splits; the filter classifier and the generator were
    trained on the K-per-class train split only; every kept image is one the filter classifier accepts; acceptance
    rates and seeds are recorded; each image is remade from its seed; the result does not depend on the batch size."""
    tmp_path = filtered_run
    params = load_params(tmp_path / "params.yaml")
    prepared = Path(params.paths.prepared)
    info = json.loads((tmp_path / "filter-run.json").read_text())
    assert info["enabled"] and info["n_train"] == 10 * K
    record = json.loads((Path(params.paths.filter) / filtering.INFO).read_text())
    assert record["trained_on"].endswith("prepared/train") and record["n_train"] == 10 * K

    syn = Path(params.paths.synthetic) / "cvae"
    data = load_dataset(syn)
    assert torch.bincount(data.labels, minlength=10).tolist() == [6] * 10
    j = filtering.FilterClassifier(params, data.class_names, torch.device("cpu"))
    for k in range(10):
        assert j.accepts(data.images[data.labels == k], k).all()

    stats = json.loads((syn / "filter.json").read_text())
    per_class = stats["per_class"]
    assert [c["kept"] for c in per_class] == [6] * 10 and all(c["drawn"] >= 6 for c in per_class)
    assert stats["acceptance_rate"] == pytest.approx(60 / sum(c["drawn"] for c in per_class))
    assert stats["acceptance_rate"] < 1  # a young generator: the filter classifier turned some candidates down
    assert "acceptance" in (syn / "README.md").read_text()
    seeds = data.metadata["seed"].to_numpy()
    for k, c in enumerate(per_class):
        first = params.sample.seed + k * filtering.CLASS_STRIDE
        mine = seeds[data.labels.numpy() == k]
        assert (mine >= first).all() and (mine < first + c["drawn"]).all() and (np.diff(mine) > 0).all()
        assert mine.max() == first + c["drawn"] - 1  # the last candidate drawn is the last one kept

    generator = load_generator(Path(params.paths.models) / "cvae")
    for i in (0, 31, 59):
        remade = generator.generate([int(data.labels[i])], int(seeds[i]))[0]
        assert torch.equal(remade, data.images[i])

    again = load_params(
        _params(
            tmp_path,
            mnist_subset,
            "again.yaml",
            sample={"batch_size": 7},
            paths={"synthetic": str(tmp_path / "again"), "augmented": str(tmp_path / "again-aug")},
        )
    )
    sample.run(again, "cvae", progress=False)
    meta_a, _ = read_metadata(syn)
    meta_b, _ = read_metadata(tmp_path / "again" / "cvae")
    assert meta_a["seed"].tolist() == meta_b["seed"].tolist()
    assert meta_a["pixel_sha256"].tolist() == meta_b["pixel_sha256"].tolist()
    assert not (prepared / "val").exists() and not (prepared / "test").exists()


def test_filter_that_cannot_fill_a_class_stops_cleanly(mnist_subset: Path, filtered_run: Path):
    """An impossible filter: one line naming the class and the fix, exit 2, the previous sample kept."""
    syn = filtered_run / "data" / "synthetic" / "cvae" / "metadata.parquet"
    before = syn.read_bytes()
    strict = _params(
        filtered_run,
        mnist_subset,
        "strict.yaml",
        filter={"min_confidence": 0.99, "max_draws": 1},
        sample={"seed": 4, "per_class": 100},
    )  # 100 candidates in a row all accepted: not here
    proc = run_cli("sample", "--params", str(strict), "--generator", "cvae")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "filter: class" in lines[0] and "filter.max_draws" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and syn.read_bytes() == before


def test_filter_classifier_is_not_trained_when_filtering_is_off(mnist_subset: Path, tmp_path: Path):
    params = load_params(_params(tmp_path, mnist_subset, filter={"enabled": False}))
    prepare.run(params)
    assert filter_stage.run(params) == {"enabled": False}
    assert not (Path(params.paths.filter) / filtering.FILE).exists()
