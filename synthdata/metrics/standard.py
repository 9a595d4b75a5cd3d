"""The registered metrics, in the order ``evaluate`` runs them and consumers show them.

- ``fid``: FID of the synthetic subsample against the real test split, and its floor: the FID of as many real
  *train* images (disjoint from test by content hash) against the same split, so ``fid / fid_floor`` compares
  like with like.
- ``class_fid``: the same within each class, and how far the worst class is from the median one.
- ``kid`` (and its floor) on the same sets; ``prdc`` with k-NN balls against the real test split.
- ``accuracy``: one CNN and budget trained on the synthetic set and on real + synthetic, selected on the real
  val split, scored on the real test split, over ``evaluate.seeds`` seeds; ``acc_real`` is the reference
  stage's baseline (same seeds, so only the training data differs).
- ``memorization``: the share of synthetic images nearer a real train image than 99% of the real test images are
  (in domain features and in pixels, the larger share; :mod:`synthdata.memorization`), overall and per class,
  and a picture of the nearest ones beside their train neighbours.
"""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import numpy as np
import torch

from synthdata import classifier, memorization, plots
from synthdata.metrics.fid import FeatureStats, frechet_distance
from synthdata.metrics.kid import kernel_distance
from synthdata.metrics.prdc import prdc as prdc_values
from synthdata.metrics.registry import Column, Inputs, Result, register_metric
from synthdata.seeding import derive


def _fid(a: np.ndarray, b_stats: FeatureStats, what: str) -> float:
    return frechet_distance(FeatureStats.of(a, what), b_stats)


def _pick(rng: np.random.Generator, n: int, m: int) -> np.ndarray:
    return np.sort(rng.choice(n, m, replace=False))


def subsample(y_syn: np.ndarray, y_train: np.ndarray, y_test: np.ndarray, num_classes: int, seed: int) -> dict:
    """Which images the feature metrics compare (``Inputs.pick``), drawn from one seeded stream: as many
    synthetic as real train images overall and per class, and the PRDC subset of the synthetic subsample."""
    rng = np.random.default_rng(derive(seed, "subsample"))
    m = min(len(y_syn), len(y_train))
    pick = {"synthetic": _pick(rng, len(y_syn), m), "train": _pick(rng, len(y_train), m), "class": []}
    for k in range(num_classes):
        sc, tc, rc = np.flatnonzero(y_syn == k), np.flatnonzero(y_train == k), np.flatnonzero(y_test == k)
        mk = min(len(sc), len(tc))
        if mk >= 2 and len(rc) >= 2:
            pick["class"].append((sc[_pick(rng, len(sc), mk)], tc[_pick(rng, len(tc), mk)], rc))
        else:
            pick["class"].append((sc[:mk], tc[:mk], rc if len(rc) >= 2 else None))
    pick["prdc"] = _pick(rng, m, min(m, len(y_test)))
    return pick


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else float("inf")


@register_metric(
    "fid",
    columns=(
        Column("fid"),
        Column("fid_floor", "floor"),
        Column("fid_ratio", "fid/floor", digits=2),
        Column("fid_all", report=False),
    ),
)
def fid(x: Inputs) -> Result:
    """FID of the synthetic subsample and of as many real train images (its floor) against the real test split;
    ``fid_all``: of every synthetic image (from the moments the shards sent back), against the same split."""
    f, p = x.features, x.pick
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        test_stats = FeatureStats.of(f["test"], "real test")
        value = _fid(f["synthetic"][p["synthetic"]], test_stats, "synthetic")
        floor = _fid(f["train"][p["train"]], test_stats, "real train")
    values = {"fid": value, "fid_floor": floor, "fid_ratio": _ratio(value, floor)}
    counts, values["fid_all"] = {"fid_n": len(p["synthetic"])}, None
    if x.moments is not None:
        values["fid_all"] = frechet_distance(x.moments["synthetic"].stats("synthetic"), test_stats)
        counts["fid_all_n"] = x.moments["synthetic"].n
    return Result(values, counts=counts, notes=sorted({str(w.message) for w in caught}))


def _worst_over_median(values: list[float]) -> float | None:
    """max / median of the finite values (is every class served?); None when undefined."""
    v = np.array(values, dtype=float)
    v = v[np.isfinite(v)]
    return float(v.max() / np.median(v)) if len(v) and np.median(v) > 0 else None


def _write_class_fid(folder: Path, result: Result, x: Inputs, generator: str) -> None:
    rows = result.per_class
    plots.bar_chart(
        x.datasets["train"].class_names,
        [r["fid"] for r in rows],
        folder / "per_class_fid.png",
        f"{generator}: per-class FID",
        "FID",
        reference=[r["fid_floor"] for r in rows],
        reference_label="real floor",
    )


@register_metric(
    "class_fid",
    columns=(
        Column("class_fid_max_over_median", report=False),
        Column("class_fid_ratio_max_over_median", report=False),
    ),
    write=_write_class_fid,
)
def class_fid(x: Inputs) -> Result:
    """Per-class FID and floor; the worst class over the median class, absolute and relative to each floor."""
    f = x.features
    rows = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for k, (si, ti, ri) in enumerate(x.pick["class"]):
            row = {
                "n_synthetic": int((x.labels["synthetic"] == k).sum()),
                "n_test": int((x.labels["test"] == k).sum()),
                "fid_n": len(si),
                "fid": float("nan"),
                "fid_floor": float("nan"),
            }
            if len(si) >= 2 and ri is not None:
                stats = FeatureStats.of(f["test"][ri], f"class {k} real test")
                row["fid"] = _fid(f["synthetic"][si], stats, f"class {k} synthetic")
                row["fid_floor"] = _fid(f["train"][ti], stats, f"class {k} real train")
            row["fid_ratio"] = row["fid"] / row["fid_floor"] if row["fid_floor"] > 0 else float("nan")
            rows.append(row)
    notes = []
    if caught:  # one line for all classes rather than one per class
        n = [min(r["fid_n"], r["n_test"]) for r in rows]
        notes.append(
            f"per-class FID: some classes compare fewer images ({min(n)}..{max(n)} per class: the smaller "
            f"of synthetic, real train and real test) than the {f['test'].shape[1]} feature dimensions; "
            "per-class FIDs are biased upward, compare them only at equal sample counts"
        )
    values = {
        "class_fid_max_over_median": _worst_over_median([r["fid"] for r in rows]),
        # classes differ in how far their own real train and test sets are apart: the same, per floor
        "class_fid_ratio_max_over_median": _worst_over_median([r["fid_ratio"] for r in rows]),
    }
    return Result(values, per_class=rows, notes=notes)


@register_metric("kid", columns=(Column("kid", report=False),))
def kid(x: Inputs) -> Result:
    """KID of the synthetic subsample and of the real train subsample (its floor) against the real test split."""
    ep, f, p = x.params.evaluate, x.features, x.pick
    value, std, size = kernel_distance(
        f["synthetic"][p["synthetic"]], f["test"], ep.kid_subset_size, ep.kid_subsets, derive(ep.seed, "kid")
    )
    floor, _, _ = kernel_distance(
        f["train"][p["train"]], f["test"], ep.kid_subset_size, ep.kid_subsets, derive(ep.seed, "kid")
    )
    return Result({"kid": value, "kid_std": std, "kid_floor": floor}, counts={"kid_subset_size": size})


@register_metric(
    "prdc",
    columns=(Column("precision"), Column("recall"), Column("density", report=False), Column("coverage", report=False)),
)
def prdc(x: Inputs) -> Result:
    """Precision, recall, density and coverage of the synthetic subsample against the real test split."""
    k = x.params.evaluate.prdc_k
    fake = x.features["synthetic"][x.pick["synthetic"][x.pick["prdc"]]]
    return Result(prdc_values(x.features["test"], fake, k), counts={"prdc_n": len(x.pick["prdc"]), "prdc_k": k})


def _write_accuracy(folder: Path, result: Result, x: Inputs, generator: str) -> None:
    acc, names = result.details, x.datasets["train"].class_names
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
    plots.bar_chart(
        list(acc),
        [s["mean"] for s in acc.values()],
        folder / "accuracy.png",
        f"{generator}: real-test accuracy by training set",
        "accuracy",
        errors=[s["std"] for s in acc.values()],
    )
    plots.confusion_chart(
        acc["synthetic"]["confusion"],
        names,
        folder / "confusion.png",
        f"{generator}: trained on synthetic, tested on real",
    )


@register_metric(
    "accuracy",
    columns=(
        Column("acc_real", "acc real", std="acc_real_std", release=True),
        Column("acc_synthetic", "acc synthetic", std="acc_synthetic_std", release=True),
        Column("acc_augmented", "acc real+synthetic", std="acc_augmented_std", release=True),
        Column("n_synthetic", report=False),
        Column("n_train", report=False),
        Column("n_test", report=False),
    ),
    write=_write_accuracy,
)
def accuracy(x: Inputs) -> Result:
    """Real-test accuracy of one classifier trained on real, synthetic and real + synthetic images."""
    ep, d = x.params.evaluate, x.datasets
    syn, train, val, test = d["synthetic"], d["train"], d["val"], d["test"]
    cfg, seeds, n = ep.classifier, ep.seeds, x.num_classes
    syn_runs = classifier.trials(syn.images, syn.labels, val, test, n, cfg, ep.seed, seeds, x.device)
    images, labels = torch.cat([train.images, syn.images]), torch.cat([train.labels, syn.labels])
    mix = None if ep.augment_real_fraction is None else (len(train.labels), ep.augment_real_fraction)
    aug_runs = classifier.trials(images, labels, val, test, n, cfg, ep.seed, seeds, x.device, mix)
    acc = {
        "real": x.baseline["real"],
        "synthetic": classifier.summarize(syn_runs),
        "augmented": classifier.summarize(aug_runs),
    }
    values = {}
    for way, s in acc.items():
        values[f"acc_{way}"], values[f"acc_{way}_std"] = s["mean"], s["std"]
    values["acc_ratio"] = values["acc_synthetic"] / values["acc_real"] if values["acc_real"] > 0 else 0.0
    values["augment_real_fraction"] = ep.augment_real_fraction
    counts = {
        "n_synthetic": len(syn.labels),
        "n_train": len(train.labels),
        "n_val": len(val.labels),
        "n_test": len(test.labels),
        "seeds": seeds,
    }
    per_class = [{f"acc_{way}": acc[way]["per_class"][k] for way in acc} for k in range(n)]
    return Result(values, counts=counts, per_class=per_class, details=acc)


def _write_memorization(folder: Path, result: Result, x: Inputs, generator: str) -> None:
    """``memorized.png``: the synthetic images nearest to a train image (relative to the threshold), each beside
    that train neighbour; ``memorized.csv``: their rows, distances and neighbours."""
    if result.details is None:  # no neighbours were given
        return
    rows = result.details["closest"]
    with open(folder / "memorized.csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["row", "class", "space", "distance", "threshold", "train_row", "flagged"])
        w.writeheader()
        w.writerows(rows)
    syn, train = x.datasets["synthetic"].images, x.datasets["train"].images
    pairs = [(syn[r["row"]], train[r["train_row"]]) for r in rows]
    plots.pairs_grid(pairs, folder / "memorized.png")


@register_metric(
    "memorization",
    columns=(
        Column("memorized_fraction", "memorized", release=True),
        Column("memorized_fraction_worst_class", report=False),
    ),
    write=_write_memorization,
)
def memorization_check(x: Inputs) -> Result:
    """Share of synthetic images nearer a real train image than 99% of the real test images are (in features and
    in pixels, the larger share), overall and per class."""
    if x.nearest is None:
        return Result({"memorized_fraction": None, "memorized_fraction_worst_class": None})  # no neighbours given
    train, test = x.datasets["train"].images, x.datasets["test"].images
    test_to_train = {
        "features": memorization.nearest(x.features["test"], x.features["train"])[0],
        "pixels": memorization.nearest(memorization.flat(test), memorization.flat(train))[0],
    }
    verdict = memorization.judge({s: x.nearest[s][0] for s in memorization.SPACES}, test_to_train)
    floor = memorization.judge(test_to_train, test_to_train).fraction()  # real held-out images, same rule
    y = x.labels["synthetic"]
    per_class = [{"memorized_fraction": verdict.fraction(np.flatnonzero(y == k))} for k in range(x.num_classes)]
    worst = np.nanmax([r["memorized_fraction"] for r in per_class]) if len(y) else float("nan")
    order = np.argsort(verdict.closeness, kind="stable")[: max(1, x.params.evaluate.grid_per_class)]
    names = x.datasets["train"].class_names
    closest = []
    for row in order:
        space = min(memorization.SPACES, key=lambda s: x.nearest[s][0][row] / max(verdict.thresholds[s], 1e-12))
        closest.append(
            {
                "row": int(row),
                "class": names[int(y[row])],
                "space": space,
                "distance": float(x.nearest[space][0][row]),
                "threshold": verdict.thresholds[space],
                "train_row": int(x.nearest[space][1][row]),
                "flagged": bool(verdict.flagged[row]),
            }
        )
    values = {
        "memorized_fraction": verdict.fraction(),
        "memorized_fraction_features": verdict.fraction(space="features"),
        "memorized_fraction_pixels": verdict.fraction(space="pixels"),
        "memorized_fraction_worst_class": float(worst),
        "memorized_fraction_floor": floor,
    }
    details = {
        "percentile": memorization.PERCENTILE,
        "thresholds": verdict.thresholds,
        "test_memorized_fraction": {s: float((test_to_train[s] < verdict.thresholds[s]).mean()) for s in test_to_train},
        "closest": closest,
    }
    return Result(values, counts={"memorized_n": len(y)}, per_class=per_class, details=details)
