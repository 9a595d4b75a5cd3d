"""Stage ``prepare``: load the configured source and write a deterministic, stratified train/val/test
split, each split a dataset in the synthdata format under ``paths.prepared/<split>``.

Exact duplicate images are dropped before splitting (a source's own test images are kept first), so no
image can sit in two splits: what scores the generators never leaks into what trains them. The low-data
protocol (``prepare.train_per_class``) keeps k train images per class and leaves val and test unchanged,
so every later stage, generator training included, sees only those k per class.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from synthdata import locks, sources
from synthdata.dataset import DatasetWriter, dataset_card
from synthdata.errors import SynthdataError
from synthdata.fsutil import atomic_dir, check_free_space, write_json
from synthdata.params import Params, resolved


def split_indices(labels: np.ndarray, params, predefined: np.ndarray | None, class_names) -> dict[str, np.ndarray]:
    """Stratified, seeded split; a source's own test split is kept as the test split."""
    counts = np.bincount(labels, minlength=len(class_names))
    if counts.min() < 3:
        name = class_names[int(counts.argmin())]
        raise SynthdataError(
            f"class {name!r} has {counts.min()} image(s); at least 3 are needed for train, val and test"
        )
    try:
        return _split(labels, params, predefined)
    except ValueError as exc:  # scikit-learn: a split too small to hold every class
        raise SynthdataError(
            f"cannot make a stratified split of {len(labels)} images in {len(class_names)} "
            f"classes ({exc}); add images or raise prepare.val_fraction/test_fraction"
        ) from None


def _split(labels: np.ndarray, params, predefined: np.ndarray | None) -> dict[str, np.ndarray]:
    idx = np.arange(len(labels))
    if predefined is not None:
        test, rest = idx[predefined == "test"], idx[predefined != "test"]
        val_size = params.val_fraction
    else:
        rest, test = train_test_split(idx, test_size=params.test_fraction, stratify=labels, random_state=params.seed)
        val_size = params.val_fraction / (1.0 - params.test_fraction)
    train, val = train_test_split(rest, test_size=val_size, stratify=labels[rest], random_state=params.seed)
    if params.train_per_class:
        rng = np.random.default_rng(params.seed)
        train = np.concatenate(
            [rng.permutation(train[labels[train] == c])[: params.train_per_class] for c in np.unique(labels)]
        )
    return {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}


def unique_images(images: np.ndarray, splits: np.ndarray | None) -> np.ndarray:
    """Indices of the first copy of every distinct image (a source's test images count first)."""
    order = np.arange(len(images))
    if splits is not None:
        order = np.concatenate([order[splits == "test"], order[splits != "test"]])
    seen: set[bytes] = set()
    keep = []
    for i in order:
        digest = hashlib.sha256(images[i].tobytes()).digest()
        if digest not in seen:
            seen.add(digest)
            keep.append(i)
    return np.sort(np.asarray(keep, dtype=np.int64))


def run(params: Params, chunk: int = 4096) -> dict:
    with locks.hold(writes=[params.paths.prepared]):
        return _run(params, chunk)


def _run(params: Params, chunk: int) -> dict:
    data = sources.load(params.data)
    keep = unique_images(data.images, data.splits)
    splits = None if data.splits is None else data.splits[keep]
    parts = {k: keep[v] for k, v in split_indices(data.labels[keep], params.prepare, splits, data.class_names).items()}
    out = Path(params.paths.prepared)
    n, h, w, c = len(keep), *data.images.shape[1:]
    check_free_space(out, n, h * (1 + w * c) + 100, 200 * n, "prepare", "choose a smaller data set")
    summary = {
        "source": data.name,
        "classes": data.class_names,
        "duplicates_dropped": int(len(data.labels) - len(keep)),
        "train_per_class": params.prepare.train_per_class,
        "image_shape": [int(data.images.shape[k]) for k in (3, 1, 2)],
    }
    with atomic_dir(out) as tmp:
        for split, idx in parts.items():
            _write_split(tmp / split, split, data, idx, params, chunk)
            summary[f"n_{split}"] = int(len(idx))
        write_json(tmp / "params.json", resolved(params))
        write_json(tmp / "summary.json", summary)
    return summary


def _write_split(folder: Path, split: str, data, idx: np.ndarray, params: Params, chunk: int) -> None:
    """One split of the real data as a dataset (ImageFolder + metadata.parquet + card), ``chunk`` images at a time."""
    writer = DatasetWriter(folder, data.class_names)
    try:
        for lo in range(0, len(idx), chunk):
            sel = idx[lo : lo + chunk]
            images = np.ascontiguousarray(data.images[sel].transpose(0, 3, 1, 2))
            origins = [data.origins[i] for i in sel]
            writer.add(
                images, data.labels[sel], [f"real-{i:07d}" for i in sel], split=split, source="real", origins=origins
            )
    finally:
        seed = params.prepare.seed
        made = f"{data.description}. The {split} split made by `synthdata prepare` (stratified, seed {seed})."
        source = [f"source: {data.name}" + (f" ({params.data.path})" if params.data.path else "")]
        card = dataset_card(
            f"{data.name}: {split} split", made, dict(writer.counts), data.class_names, source, data.license
        )
        writer.close(card)
