"""Stage ``evaluate``: score one generator's synthetic dataset with every registered metric, and gate it.

The metrics (``synthdata.metrics.standard``: FID and its real-vs-real floor, per-class FID, KID, PRDC, the
downstream accuracy check) all see the same features and subsamples; their values, with the sample counts they
were made from, are written into ``metrics.json`` and their per-class rows into ``per_class.csv``.

**Gate**: ``fid / fid_floor <= gate.max_fid_ratio`` and ``acc_synthetic / acc_real >= gate.min_acc_ratio``.
The outputs are written either way (``gate.json`` says ``passed``); a failed gate is reported, and the dataset
is never marked publishable.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

from synthdata import features, locks, plots
from synthdata.dataset import load_dataset
from synthdata.errors import SynthdataError
from synthdata.executors import dask_address
from synthdata.fsutil import atomic_dir, write_json
from synthdata.metrics import registry
from synthdata.metrics.standard import subsample
from synthdata.params import Params, resolved
from synthdata.protocol import load_splits, protocol
from synthdata.runtime import setup_device


def gate_checks(metrics: dict, params: Params) -> list[dict]:
    g, acc_ratio = params.gate, metrics["acc_ratio"]  # computed once, by the accuracy metric
    memorized = []
    if g.max_memorized_fraction is not None:
        m = metrics["memorized_fraction"]
        memorized.append(
            {
                "check": "memorized_fraction",
                "value": m,
                "limit": g.max_memorized_fraction,
                "op": "<=",
                "passed": bool(m <= g.max_memorized_fraction),
                "detail": "share of synthetic images nearer a train image than 99% of the real test images are",
            }
        )
    return [
        {
            "check": "fid_ratio",
            "value": metrics["fid_ratio"],
            "limit": g.max_fid_ratio,
            "op": "<=",
            "passed": bool(metrics["fid_ratio"] <= g.max_fid_ratio),
            "detail": f"fid {metrics['fid']:.4g} / floor {metrics['fid_floor']:.4g}",
        },
        {
            "check": "acc_ratio",
            "value": acc_ratio,
            "limit": g.min_acc_ratio,
            "op": ">=",
            "passed": bool(acc_ratio >= g.min_acc_ratio),
            "detail": f"acc_synthetic {metrics['acc_synthetic']:.4f} / acc_real {metrics['acc_real']:.4f}",
        },
        *memorized,
    ]


def _baseline(params: Params) -> dict:
    path = Path(params.paths.reference) / "baseline.json"
    if not path.is_file():
        raise SynthdataError(f"{path}: not found; run 'synthdata reference' first")
    baseline = json.loads(path.read_text())
    if baseline.get("protocol") != protocol(params):
        raise SynthdataError(
            f"{path}: made with other evaluate settings (seed, seeds or classifier); run 'synthdata reference' again"
        )
    return baseline


def run(params: Params, name: str) -> dict:
    p = params.paths
    with locks.hold(writes=[Path(p.evaluation) / name], reads=[p.prepared, p.reference, Path(p.synthetic) / name]):
        return _run(params, name)


def _inputs(params: Params, name: str) -> tuple[registry.Inputs, features.Extractor, float]:
    """Everything the metrics read: datasets, features of the synthetic, real train and real test images, the
    subsamples they compare; and the extractor with its images per second."""
    device = setup_device(params.runtime)
    baseline = _baseline(params)
    splits = load_splits(params)
    syn = load_dataset(Path(params.paths.synthetic) / name)
    names = splits["train"].class_names
    if syn.class_names != names:
        raise SynthdataError(
            f"{params.paths.synthetic}/{name}: classes {syn.class_names} differ from the prepared "
            f"data {names}; sample again"
        )
    if len(syn.labels) < 2:
        raise SynthdataError(f"{params.paths.synthetic}/{name}: {len(syn.labels)} image(s); sample more")
    datasets = {"synthetic": syn, **splits}
    extractor = features.build(params, device)
    feats = features.load_real(extractor, splits, params)  # made once, by `reference`
    labels = {k: d.labels.numpy() for k, d in datasets.items()}
    pick = subsample(labels["synthetic"], labels["train"], labels["test"], len(names), params.evaluate.seed)
    keep, pick = _only_picked(pick)
    t = time.perf_counter()
    where = params.runtime.device if dask_address(params.runtime) else str(device)
    syn_dir = Path(params.paths.synthetic) / name
    files = syn.metadata["file_name"].tolist()
    kept, moments, nearest = features.of_dataset(extractor, params, syn_dir, files, keep, where, neighbours=True)
    speed = len(syn.labels) / max(time.perf_counter() - t, 1e-9)
    feats = {"synthetic": kept, **feats}
    moments = {"synthetic": moments}
    inputs = registry.Inputs(feats, labels, pick, datasets, len(names), params, device, baseline, moments, nearest)
    return inputs, extractor, speed


def _only_picked(pick: dict) -> tuple[np.ndarray, dict]:
    """The synthetic rows the feature metrics compare (sorted), and ``pick`` with its synthetic indices made
    positions among those rows: only their features are kept (the moments cover every row)."""
    keep = np.unique(np.concatenate([pick["synthetic"], *(c[0] for c in pick["class"])]).astype(np.int64))
    at = lambda rows: np.searchsorted(keep, rows)  # noqa: E731
    classes = [(at(si), ti, ri) for si, ti, ri in pick["class"]]
    return keep, {**pick, "synthetic": at(pick["synthetic"]), "class": classes}


def _run(params: Params, name: str) -> dict:
    t_start = time.perf_counter()
    x, extractor, feature_speed = _inputs(params, name)
    results = registry.compute(x)
    acceptance = _acceptance(Path(params.paths.synthetic) / name)
    metrics = {k: v for r in results.values() for k, v in {**r.values, **r.counts}.items()}
    metrics["feature_extractor"], metrics["feature_extractor_sha256"] = extractor.name, extractor.sha256
    metrics["feature_dim"], metrics["train_per_class"] = extractor.dim, params.prepare.train_per_class
    metrics["filter_acceptance"] = acceptance["acceptance_rate"] if acceptance else None
    checks = gate_checks(metrics, params)
    metrics["gate_passed"] = all(c["passed"] for c in checks)
    notes = [n for r in results.values() for n in r.notes]
    with atomic_dir(Path(params.paths.evaluation) / name) as tmp:
        _write(tmp, x, results, metrics, checks, notes, acceptance, name)
    _warn(name, notes, checks, metrics["gate_passed"], params)
    # timings are printed, never written: every output depends only on the inputs (byte-reproducible)
    shown = {c.key: _plain(metrics.get(c.key)) for c in registry.columns() if c.report}
    seconds = round(time.perf_counter() - t_start, 1)
    return {
        "generator": name,
        **shown,
        "gate_passed": metrics["gate_passed"],
        "seconds": seconds,
        "feature_images_per_s": round(feature_speed),
    }


def _write(
    tmp: Path,
    x: registry.Inputs,
    results: dict,
    metrics: dict,
    checks: list[dict],
    notes: list[str],
    acceptance: dict | None,
    name: str,
) -> None:
    """Everything ``evaluate`` leaves for one generator, into the folder being built."""
    params, syn = x.params, x.datasets["synthetic"]
    sha = syn.metadata["checkpoint_sha256"].dropna().unique().tolist()
    write_json(tmp / "metrics.json", {k: _plain(v) for k, v in metrics.items()})
    write_json(
        tmp / "gate.json",
        {
            "generator": name,
            "passed": metrics["gate_passed"],
            "checks": checks,
            "checkpoint_sha256": sha,
            "dataset": f"{params.paths.synthetic}/{name}",
        },
    )
    details = {k: r.details for k, r in results.items() if r.details is not None}
    write_json(tmp / "details.json", {**details, "warnings": notes, "protocol": protocol(params)})
    _write_per_class(tmp / "per_class.csv", _per_class(results, x.datasets["train"].class_names, acceptance))
    plots.sample_grid(syn.images, syn.labels, x.num_classes, params.evaluate.grid_per_class, tmp / "samples.png")
    for key, result in results.items():
        if registry.REGISTRY[key].write is not None:
            registry.REGISTRY[key].write(tmp, result, x, name)
    write_json(tmp / "params.json", resolved(params))


def _acceptance(folder: Path) -> dict | None:
    """The classifier filter's acceptance rates, when the dataset was filtered."""
    path = folder / "filter.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _per_class(results: dict, names: list[str], acceptance: dict | None) -> list[dict]:
    rows = [{"class": c, "class_id": k} for k, c in enumerate(names)]
    for result in results.values():
        for row, values in zip(rows, result.per_class):
            row.update(values)
    for k, row in enumerate(rows):
        row["acceptance_rate"] = acceptance["per_class"][k]["acceptance_rate"] if acceptance else None
    return rows


def _write_per_class(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def _warn(name: str, notes: list[str], checks: list[dict], passed: bool, params: Params) -> None:
    for note in notes:
        print(f"synthdata evaluate {name}: warning: {note}", file=sys.stderr)
    if not passed:  # recorded, not raised: 'publish' never publishes it, 'report' shows why
        failed = "; ".join(
            f"{c['check']} {c['value']:.3f} (limit {c['op']} {c['limit']}: {c['detail']})"
            for c in checks
            if not c["passed"]
        )
        print(
            f"synthdata evaluate {name}: warning: quality gate FAILED: {failed}; {name} will not be published "
            f"(details in {params.paths.evaluation}/{name})",
            file=sys.stderr,
        )


def _plain(v):
    if isinstance(v, float) and not np.isfinite(v):
        return None
    return v
