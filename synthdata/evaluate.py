"""Stage ``evaluate``: score one generator's synthetic dataset and gate it.

Protocol (written into ``metrics.json`` beside every number):

- **FID** of ``fid_n`` synthetic images against the real test split, and its floor: the FID of ``fid_n``
  real *train* images (disjoint from test by content hash) against the same test split. Both sides use
  the same sample count and the same reference, so ``fid / fid_floor`` compares like with like. Per-class
  FID and floor the same way within each class. **KID** (and its floor) on the same sets; **PRDC** of
  ``prdc_n`` synthetic images against the real test split with k-NN balls.
- **Downstream check**: the same CNN and budget trained on the synthetic set and on real + synthetic,
  with model selection on the real val split, scored on the real test split, ``evaluate.seeds`` seeds;
  ``acc_real`` comes from the ``reference`` stage (same seeds, so only the training data differs).
- **Gate**: ``fid / fid_floor <= gate.max_fid_ratio`` and ``acc_synthetic / acc_real >= gate.min_acc_ratio``.
  The outputs are written either way (``gate.json`` says ``passed``); a failed gate then stops the stage
  with the failed checks and their numbers, and the dataset is never marked publishable.
"""

from __future__ import annotations

import csv
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from synthdata import classifier, features, locks, plots
from synthdata.dataset import load_dataset
from synthdata.errors import SynthdataError
from synthdata.fsutil import atomic_dir, write_json
from synthdata.metrics import FeatureStats, frechet_distance, kernel_distance, prdc
from synthdata.params import Params, resolved
from synthdata.protocol import load_splits, protocol
from synthdata.runtime import setup_device
from synthdata.seeding import derive


def _fid(a: np.ndarray, b_stats: FeatureStats, what: str) -> float:
    return frechet_distance(FeatureStats.of(a, what), b_stats)


def _pick(rng: np.random.Generator, n: int, m: int) -> np.ndarray:
    return np.sort(rng.choice(n, m, replace=False))


def quality(f_syn: np.ndarray, y_syn: np.ndarray, f_train: np.ndarray, y_train: np.ndarray,
            f_test: np.ndarray, y_test: np.ndarray, num_classes: int,
            params: Params) -> tuple[dict, list[dict], list[str]]:
    """FID/KID/PRDC overall and FID per class; returns (metrics, per-class rows, warnings)."""
    ep = params.evaluate
    rng = np.random.default_rng(derive(ep.seed, "subsample"))
    m = min(len(f_syn), len(f_train))
    si, ti = _pick(rng, len(f_syn), m), _pick(rng, len(f_train), m)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        test_stats = FeatureStats.of(f_test, "real test")
        out = {"fid": _fid(f_syn[si], test_stats, "synthetic"),
               "fid_floor": _fid(f_train[ti], test_stats, "real train"), "fid_n": m}
    notes = sorted({str(w.message) for w in caught})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows = []
        for k in range(num_classes):
            sc, tc, rc = np.flatnonzero(y_syn == k), np.flatnonzero(y_train == k), np.flatnonzero(y_test == k)
            mk = min(len(sc), len(tc))
            row = {"class_id": k, "n_synthetic": int(len(sc)), "n_test": int(len(rc)), "fid_n": int(mk),
                   "fid": float("nan"), "fid_floor": float("nan")}
            if mk >= 2 and len(rc) >= 2:
                stats = FeatureStats.of(f_test[rc], f"class {k} real test")
                row["fid"] = _fid(f_syn[sc[_pick(rng, len(sc), mk)]], stats, f"class {k} synthetic")
                row["fid_floor"] = _fid(f_train[tc[_pick(rng, len(tc), mk)]], stats, f"class {k} real train")
            rows.append(row)
    if caught:  # one line for all classes rather than one per class
        n = [min(r["fid_n"], r["n_test"]) for r in rows]
        notes.append(f"per-class FID: some classes compare fewer images ({min(n)}..{max(n)} per class: the smaller "
                     f"of synthetic, real train and real test) than the {f_test.shape[1]} feature dimensions; "
                     "per-class FIDs are biased upward, compare them only at equal sample counts")
    out["kid"], out["kid_std"], out["kid_subset_size"] = kernel_distance(
        f_syn[si], f_test, ep.kid_subset_size, ep.kid_subsets, derive(ep.seed, "kid"))
    out["kid_floor"], _, _ = kernel_distance(f_train[ti], f_test, ep.kid_subset_size, ep.kid_subsets,
                                             derive(ep.seed, "kid"))
    n_prdc = min(m, len(f_test))
    out.update(prdc(f_test, f_syn[si[_pick(rng, m, n_prdc)]], ep.prdc_k))
    out["prdc_n"], out["prdc_k"] = n_prdc, ep.prdc_k
    out["fid_ratio"] = out["fid"] / out["fid_floor"] if out["fid_floor"] > 0 else float("inf")
    return out, rows, notes


def _worst_over_median(values: list[float]) -> float | None:
    """max / median of the finite values (is every class served?); None when undefined."""
    v = np.array(values, dtype=float)
    v = v[np.isfinite(v)]
    return float(v.max() / np.median(v)) if len(v) and np.median(v) > 0 else None


def gate_checks(metrics: dict, params: Params) -> list[dict]:
    g = params.gate
    acc_ratio = metrics["acc_synthetic"] / metrics["acc_real"] if metrics["acc_real"] > 0 else 0.0
    return [
        {"check": "fid_ratio", "value": metrics["fid_ratio"], "limit": g.max_fid_ratio, "op": "<=",
         "passed": bool(metrics["fid_ratio"] <= g.max_fid_ratio),
         "detail": f"fid {metrics['fid']:.4g} / floor {metrics['fid_floor']:.4g}"},
        {"check": "acc_ratio", "value": acc_ratio, "limit": g.min_acc_ratio, "op": ">=",
         "passed": bool(acc_ratio >= g.min_acc_ratio),
         "detail": f"acc_synthetic {metrics['acc_synthetic']:.4f} / acc_real {metrics['acc_real']:.4f}"},
    ]


def _baseline(params: Params) -> dict:
    path = Path(params.paths.reference) / "baseline.json"
    if not path.is_file():
        raise SynthdataError(f"{path}: not found; run 'synthdata reference' first")
    baseline = json.loads(path.read_text())
    if baseline.get("protocol") != protocol(params):
        raise SynthdataError(f"{path}: made with other evaluate settings (seed, seeds or classifier); "
                             "run 'synthdata reference' again")
    return baseline


def run(params: Params, name: str) -> dict:
    p = params.paths
    with locks.hold(writes=[Path(p.evaluation) / name],
                    reads=[p.prepared, p.reference, Path(p.synthetic) / name]):
        return _run(params, name)


def _run(params: Params, name: str) -> dict:
    t_start = time.perf_counter()
    ep = params.evaluate
    device = setup_device(params.runtime)
    baseline = _baseline(params)
    splits = load_splits(params)
    train, val, test = splits["train"], splits["val"], splits["test"]
    syn = load_dataset(Path(params.paths.synthetic) / name)
    names = train.class_names
    if syn.class_names != names:
        raise SynthdataError(f"{params.paths.synthetic}/{name}: classes {syn.class_names} differ from the prepared "
                             f"data {names}; sample again")
    if len(syn.labels) < 2:
        raise SynthdataError(f"{params.paths.synthetic}/{name}: {len(syn.labels)} image(s); sample more")

    extractor = features.build(params, device)
    t = time.perf_counter()
    f_syn, f_train, f_test = extractor(syn.images), extractor(train.images), extractor(test.images)
    feature_seconds = time.perf_counter() - t
    n_feat = len(f_syn) + len(f_train) + len(f_test)
    metrics, rows, notes = quality(f_syn, syn.labels.numpy(), f_train, train.labels.numpy(), f_test,
                                   test.labels.numpy(), len(names), params)

    cfg, seeds = ep.classifier, ep.seeds
    syn_runs = classifier.trials(syn.images, syn.labels, val, test, len(names), cfg, ep.seed, seeds, device)
    aug_images, aug_labels = torch.cat([train.images, syn.images]), torch.cat([train.labels, syn.labels])
    mix = None if ep.augment_real_fraction is None else (len(train.labels), ep.augment_real_fraction)
    aug_runs = classifier.trials(aug_images, aug_labels, val, test, len(names), cfg, ep.seed, seeds, device, mix)
    acc = {"real": baseline["real"], "synthetic": classifier.summarize(syn_runs),
           "augmented": classifier.summarize(aug_runs)}
    for way, s in acc.items():
        metrics[f"acc_{way}"], metrics[f"acc_{way}_std"] = s["mean"], s["std"]
    sha = syn.metadata["checkpoint_sha256"].dropna().unique().tolist()
    metrics.update({
        "n_synthetic": len(syn.labels), "n_train": len(train.labels), "n_val": len(val.labels),
        "n_test": len(test.labels), "seeds": seeds, "feature_extractor": extractor.name,
        "feature_extractor_sha256": extractor.sha256, "feature_dim": extractor.dim,
        "train_per_class": params.prepare.train_per_class, "augment_real_fraction": ep.augment_real_fraction,
    })
    filtered = Path(params.paths.synthetic) / name / "filter.json"
    acceptance = json.loads(filtered.read_text()) if filtered.is_file() else None
    metrics["filter_acceptance"] = acceptance["acceptance_rate"] if acceptance else None
    metrics["class_fid_max_over_median"] = _worst_over_median([r["fid"] for r in rows])
    # classes differ in how far their own real train and test sets are apart: the same, relative to each floor
    metrics["class_fid_ratio_max_over_median"] = _worst_over_median(
        [r["fid"] / r["fid_floor"] if r["fid_floor"] > 0 else float("nan") for r in rows])
    checks = gate_checks(metrics, params)
    metrics["acc_ratio"] = checks[1]["value"]
    metrics["gate_passed"] = all(c["passed"] for c in checks)
    # timings are printed, never written: every output depends only on the inputs (byte-reproducible)
    timing = {"seconds": time.perf_counter() - t_start, "feature_images_per_s": n_feat / max(feature_seconds, 1e-9)}
    for k, row in enumerate(rows):
        row["acceptance_rate"] = acceptance["per_class"][k]["acceptance_rate"] if acceptance else None
        ratio = row["fid"] / row["fid_floor"] if row["fid_floor"] > 0 else float("nan")
        row.update({"class": names[k], "fid_ratio": ratio,
                    **{f"acc_{way}": acc[way]["per_class"][k] for way in acc}})

    with atomic_dir(Path(params.paths.evaluation) / name) as tmp:
        write_json(tmp / "metrics.json", {k: _plain(v) for k, v in metrics.items()})
        write_json(tmp / "gate.json", {"generator": name, "passed": metrics["gate_passed"], "checks": checks,
                                       "checkpoint_sha256": sha, "dataset": f"{params.paths.synthetic}/{name}"})
        write_json(tmp / "details.json", {"accuracy": acc, "warnings": notes, "protocol": protocol(params)})
        _write_tables(tmp, rows, acc, names)
        _write_pictures(tmp, syn, rows, acc, names, name, ep.grid_per_class)
        write_json(tmp / "params.json", resolved(params))
    for note in notes:
        print(f"synthdata evaluate {name}: warning: {note}", file=sys.stderr)
    if not metrics["gate_passed"]:  # recorded, not raised: 'publish' never publishes it, 'report' shows why
        failed = "; ".join(f"{c['check']} {c['value']:.3f} (limit {c['op']} {c['limit']}: {c['detail']})"
                           for c in checks if not c["passed"])
        print(f"synthdata evaluate {name}: warning: quality gate FAILED: {failed}; {name} will not be published "
              f"(details in {params.paths.evaluation}/{name})", file=sys.stderr)
    return {"generator": name, **{k: _plain(metrics[k]) for k in (
        "fid", "fid_floor", "kid", "precision", "recall", "acc_real", "acc_synthetic", "acc_augmented", "gate_passed")},
        "seconds": round(timing["seconds"], 1), "feature_images_per_s": round(timing["feature_images_per_s"])}


def _plain(v):
    if isinstance(v, float) and not np.isfinite(v):
        return None
    return v


def _write_tables(folder: Path, rows: list[dict], acc: dict, names: list[str]) -> None:
    cols = ["class", "class_id", "n_synthetic", "n_test", "fid_n", "fid", "fid_floor", "fid_ratio",
            "acc_real", "acc_synthetic", "acc_augmented", "acceptance_rate"]
    with open(folder / "per_class.csv", "w", newline="") as f:
        w = csv.DictWriter(f, cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    with open(folder / "accuracy.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["training_set", "accuracy", "std"])
        w.writerows([way, s["mean"], s["std"]] for way, s in acc.items())
    with open(folder / "confusion.csv", "w", newline="") as f:  # seed 0 of the synthetic-trained classifier
        w = csv.writer(f)
        w.writerow(["actual", "predicted"])
        for i, row in enumerate(acc["synthetic"]["confusion"]):
            for j, count in enumerate(row):
                w.writerows([[names[i], names[j]]] * count)


def _write_pictures(folder: Path, syn, rows: list[dict], acc: dict, names: list[str], name: str,
                    per_class: int) -> None:
    plots.sample_grid(syn.images, syn.labels, len(names), per_class, folder / "samples.png")
    plots.bar_chart(names, [r["fid"] for r in rows], folder / "per_class_fid.png", f"{name}: per-class FID",
                    "FID", reference=[r["fid_floor"] for r in rows], reference_label="real floor")
    plots.bar_chart(list(acc), [s["mean"] for s in acc.values()], folder / "accuracy.png",
                    f"{name}: real-test accuracy by training set", "accuracy", errors=[s["std"] for s in acc.values()])
    plots.confusion_chart(acc["synthetic"]["confusion"], names, folder / "confusion.png",
                          f"{name}: trained on synthetic, tested on real")
