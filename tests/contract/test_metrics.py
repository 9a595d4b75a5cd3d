"""The contract every registered metric must pass (a new metric gets these tests for free): it returns a
``Result`` with a value for each of its columns and integer sample counts, JSON-safe values, the same values on
a second call, per-class rows for every class or none, and (when it has one) a ``write`` hook that adds files."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from synthdata import classifier, memorization
from synthdata.metrics import registry
from synthdata.metrics.fid import Moments
from synthdata.metrics.standard import subsample
from synthdata.params import load_params
from tests.conftest import write_params

NAMES = list(registry.REGISTRY)
CLASSES = 3


def _data(n: int, seed: int, names: list[str]):
    g = torch.Generator().manual_seed(seed)
    return SimpleNamespace(
        images=torch.randint(0, 256, (n, 1, 8, 8), generator=g, dtype=torch.uint8),
        labels=torch.arange(n) % CLASSES,
        class_names=names,
    )


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> registry.Inputs:
    params = load_params(write_params(tmp_path_factory.mktemp("metrics"), evaluate={"kid_subsets": 3, "seeds": 2}))
    names = ["a", "b", "c"]
    d = {
        "synthetic": _data(60, 1, names),
        "train": _data(45, 2, names),
        "val": _data(15, 3, names),
        "test": _data(30, 4, names),
    }
    rng = np.random.default_rng(0)
    feats = {
        k: rng.normal(size=(len(d[k].labels), 6)) + (0.3 if k == "synthetic" else 0.0)
        for k in ("synthetic", "train", "test")
    }
    labels = {k: v.labels.numpy() for k, v in d.items()}
    ep = params.evaluate
    runs = classifier.trials(
        d["train"].images,
        d["train"].labels,
        d["val"],
        d["test"],
        CLASSES,
        ep.classifier,
        ep.seed,
        ep.seeds,
        torch.device("cpu"),
    )
    nearest = {  # what evaluate's feature shards send back: every synthetic image's nearest train image
        "features": memorization.nearest(feats["synthetic"], feats["train"]),
        "pixels": memorization.nearest(memorization.flat(d["synthetic"].images), memorization.flat(d["train"].images)),
    }
    return registry.Inputs(
        feats,
        labels,
        subsample(labels["synthetic"], labels["train"], labels["test"], CLASSES, 0),
        d,
        CLASSES,
        params,
        torch.device("cpu"),
        {"real": classifier.summarize(runs)},
        {"synthetic": Moments.of(feats["synthetic"])},
        nearest,
    )


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return a == b


@pytest.mark.parametrize("name", NAMES)
def test_values_counts_and_determinism(name, inputs):
    metric = registry.REGISTRY[name]
    first, again = metric.fn(inputs), metric.fn(inputs)
    assert isinstance(first, registry.Result) and metric.columns
    for c in metric.columns:
        assert c.key in first.values or c.key in first.counts, f"{name}: column {c.key} has no value"
        assert c.std is None or c.std in first.values
    assert not set(first.values) & set(first.counts)
    assert all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in first.counts.values())
    assert all(v is None or isinstance(v, (int, float, str)) for v in first.values.values())
    json.dumps({**first.values, **first.counts})
    assert first.values.keys() == again.values.keys()
    assert all(_same(first.values[k], again.values[k]) for k in first.values) and first.counts == again.counts
    assert first.per_class == [] or len(first.per_class) == CLASSES
    assert all(isinstance(n, str) and "\n" not in n for n in first.notes)


@pytest.mark.parametrize("name", [n for n in NAMES if registry.REGISTRY[n].write is not None])
def test_write_hook_adds_files(name, inputs, tmp_path):
    metric = registry.REGISTRY[name]
    metric.write(tmp_path, metric.fn(inputs), inputs, "toy")
    assert [p for p in tmp_path.iterdir() if p.stat().st_size > 0]


def test_column_keys_are_unique_across_metrics():
    keys = registry.score_keys()
    assert len(keys) == len(set(keys))
