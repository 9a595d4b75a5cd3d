"""Stage ``reference``: everything about the real data that every generator's evaluation shares.

- the real-only downstream baseline: ``evaluate.seeds`` classifiers trained on the real train split,
  selected on the real val split, scored on the real test split (``acc_real``);
- the ``domain`` feature extractor for FID/KID/PRDC: the baseline's seed-0 classifier, saved as tensors
  plus JSON with its real-test accuracy recorded beside it;
- the real train and test splits' features by ``evaluate.feature_extractor`` (``real_features.pt``), which
  every ``evaluate@<generator>`` reads instead of extracting them again.

Both are declared, cached outputs (``paths.reference``), computed once rather than once per generator.
"""

from __future__ import annotations

import time

from synthdata import classifier, features, locks
from synthdata.dataset import SPLITS
from synthdata.fsutil import atomic_dir, write_json
from synthdata.params import Params, resolved
from synthdata.protocol import load_splits, protocol
from synthdata.runtime import setup_device


def run(params: Params) -> dict:
    with locks.hold(writes=[params.paths.reference], reads=[params.paths.prepared]):
        return _run(params)


def _run(params: Params) -> dict:
    features.check(params)  # before an hour of training: evaluate will need it
    device = setup_device(params.runtime)
    splits = load_splits(params)
    train, val, test = (splits[s] for s in SPLITS)
    ep = params.evaluate
    t = time.perf_counter()
    runs = classifier.trials(
        train.images, train.labels, val, test, len(train.class_names), ep.classifier, ep.seed, ep.seeds, device
    )
    real = classifier.summarize(runs)
    seconds = time.perf_counter() - t
    info = _domain_info(params, train, runs[0])
    with atomic_dir(params.paths.reference) as tmp:
        sha = classifier.save(tmp / features.DOMAIN_FILE, runs[0]["model"], info)
        write_json(tmp / "domain.json", {**info, "sha256": sha})
        counts = {f"n_{s}": len(d.labels) for s, d in splits.items()}
        baseline = {"acc_real": real["mean"], "acc_real_std": real["std"], "real": real, **counts}
        write_json(tmp / "baseline.json", {**baseline, "protocol": protocol(params)})
        features.save_real(tmp, features.build(params, device, reference=tmp), splits)
        write_json(tmp / "params.json", resolved(params))
    return {
        "acc_real": real["mean"],
        "acc_real_std": real["std"],
        "domain_test_accuracy": info["test_accuracy"],
        "seconds": round(seconds, 1),
    }


def _domain_info(params: Params, train, run: dict) -> dict:
    """The domain extractor's architecture and provenance (its seed-0 baseline classifier)."""
    cfg = params.evaluate.classifier
    shape = {
        "in_channels": int(train.images.shape[1]),
        "num_classes": len(train.class_names),
        "image_hw": list(train.images.shape[2:]),
        "width": cfg.width,
        "feature_dim": cfg.feature_dim,
    }
    return {
        **shape,
        "class_names": train.class_names,
        "test_accuracy": run["test_accuracy"],
        "val_accuracy": run["val_accuracy"],
        "trained_on": f"{params.paths.prepared}/train",
    }
