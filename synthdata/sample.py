"""Stage ``sample``: generate a labeled synthetic dataset from a trained generator, and the augmented
dataset (the real train split plus the synthetic images, told apart by the ``source`` column).

Images stream to disk batch by batch; every image's ``seed`` and ``checkpoint_sha256`` are recorded, so
``load_generator(ckpt).generate([label_id], seed)`` remakes it bit for bit: image i uses latent seed
``sample.seed + i`` (classes in order), or, with ``filter.enabled``, the seeds the filter classifier accepted
(see :mod:`synthdata.filtering`; ``filter.json`` has each class's acceptance rate). Both datasets appear
together, only when both are complete.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import json
import os
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from tqdm import tqdm

from synthdata import locks, tars
from synthdata.checkpoint import SELECTED, load_generator
from synthdata.dataset import (
    METADATA_SCHEMA,
    DatasetWriter,
    MetadataWriter,
    dataset_card,
    finish_dataset,
    read_metadata,
)
from synthdata.errors import SynthdataError
from synthdata.executors import dask_address
from synthdata.filtering import CLASS_STRIDE, FilterClassifier, filtered_class
from synthdata.fsutil import atomic_dir, check_free_space, existing_ancestor, link_or_copy, sha256_file, write_json
from synthdata.params import Params, SampleParams, resolved
from synthdata.runtime import setup_device
from synthdata.shards import Plan, Shard, ShardJob, make, sweep


def plan_counts(params: SampleParams, class_names: list[str]) -> list[int]:
    unknown = sorted(set(params.counts) - set(class_names))
    if unknown:
        raise SynthdataError(f"sample.counts: unknown class {unknown[0]!r}; classes are {class_names}")
    return [params.counts.get(c, params.per_class) for c in class_names]


def check_space(params: Params, name: str, n: int, image_shape: tuple[int, ...], real_files: int) -> None:
    """Refuse before writing when the synthetic PNGs (and the augmented copy, where links are impossible)
    cannot fit: a PNG of this encoder is at most its raw pixels plus 100 bytes."""
    c, h, w = image_shape
    p = params.paths
    syn, aug, real = _device(p.synthetic), _device(p.augmented), _device(p.prepared)
    per_file, fix = h * (1 + w * c) + 100, "lower sample.per_class / sample.counts"
    on_aug = (0 if aug == syn else n) + (0 if aug == real else real_files)  # copies where links cannot reach
    if aug == syn:
        check_free_space(p.synthetic, n + on_aug, per_file, 400 * n, f"sample {name}", fix)
    else:
        check_free_space(p.synthetic, n, per_file, 200 * n, f"sample {name}", fix)
        check_free_space(p.augmented, on_aug, per_file, 200 * (n + real_files), f"sample {name}", fix)


ShardMaker = Callable[[ShardJob], Iterable[Shard]]


def _device(folder: str | os.PathLike) -> int:
    return os.stat(existing_ancestor(folder)).st_dev


def run(
    params: Params,
    name: str,
    checkpoint: str | os.PathLike | None = None,
    progress: bool | None = None,
    shards: ShardMaker | None = None,
) -> dict:
    """Sample generator ``name`` into ``paths.synthetic`` and ``paths.augmented``. ``shards(job)``, when given,
    makes the shards instead of :func:`synthdata.shards.make` (every shard once, in index order: the Prefect
    flow of ``flows/shards.py`` maps them over Dask as task runs); the bytes written are the same."""
    p = params.paths
    reads = [p.prepared, p.filter] + ([] if checkpoint else [Path(p.models) / name])
    with locks.hold(writes=[Path(p.synthetic) / name, Path(p.augmented) / name], reads=reads):
        return _run(params, name, checkpoint, progress, shards)


def _run(params: Params, name: str, checkpoint, progress: bool | None, shards: ShardMaker | None) -> dict:
    device = setup_device(params.runtime)
    model, real_dir, real_meta = _load(params, name, checkpoint, device)
    counts = plan_counts(params.sample, model.class_names)
    plan = Plan(counts, params.sample.seed)
    check_space(params, name, plan.total, model.image_shape, len(real_meta))
    provenance = _provenance(params, name, model.checkpoint_sha256, plan.total)
    mixture = _mixture(params, name, counts, checkpoint) if params.sample.mixture else None
    if mixture:
        provenance[1] = mixture.pop("line")
    with contextlib.ExitStack() as stack:
        syn_dir = stack.enter_context(atomic_dir(Path(params.paths.synthetic) / name))
        aug_dir = stack.enter_context(atomic_dir(Path(params.paths.augmented) / name))
        _write_synthetic(syn_dir, model, plan, counts, provenance, params, name, device, progress, shards, mixture)
        write_json(syn_dir / "params.json", resolved(params))
        _write_augmented(aug_dir, syn_dir, real_dir, real_meta, model.class_names, provenance, params, name, plan.total)
    n_aug = plan.total + len(real_meta)
    return {
        "generator": name,
        "n_synthetic": plan.total,
        "n_augmented": n_aug,
        "checkpoint_sha256": model.checkpoint_sha256,
    }


def _load(params: Params, name: str, checkpoint, device: torch.device):
    """The generator (checked against the prepared data's classes), the real train folder and its metadata."""
    ckpt = Path(checkpoint) if checkpoint else Path(params.paths.models) / name
    model = load_generator(ckpt, expect=name, device=device)  # default memory format: see generate_from_seeds
    real_dir = Path(params.paths.prepared) / "train"
    real_meta, real_classes = read_metadata(real_dir)
    if real_classes != model.class_names:
        raise SynthdataError(
            f"{ckpt}: generator classes {model.class_names} differ from {real_dir} {real_classes}; "
            "train it on this prepared data"
        )
    return model, real_dir, real_meta


def _write_synthetic(
    syn_dir: Path,
    model,
    plan: Plan,
    counts: list[int],
    provenance: list[str],
    params: Params,
    name: str,
    device: torch.device,
    progress: bool | None,
    shards: ShardMaker | None,
    mixture: dict | None = None,
) -> None:
    """The synthetic dataset, shard by shard or (filtered) class by class, with its card (``provenance``
    gains the filter's line)."""
    disable = None if progress is None else not progress
    bar = tqdm(total=plan.total, desc=f"sample {name}", unit="img", mininterval=1.0, disable=disable)
    card = functools.partial(_card, name, plan.total, model.class_names, provenance, params.sample.format)
    if not params.filter.enabled:
        job = _job(params, name, model, counts, device, syn_dir, mixture)
        _write_sharded(syn_dir, job, params, bar, shards)
        finish_dataset(syn_dir, model.class_names, card(dict(zip(model.class_names, counts))))
        bar.close()
        return
    clf = FilterClassifier(params, model.class_names, device)
    writer = DatasetWriter(syn_dir, model.class_names, workers=params.sample.workers)
    try:
        provenance.append(_write_filtered(writer, model, clf, counts, params, name, syn_dir, bar))
        bar.close()
    finally:
        writer.close(card(dict(writer.counts)))


def _card(name: str, total: int, class_names: list[str], provenance: list[str], form: str, counts: dict) -> str:
    summary = f"{total} images sampled class by class from the `{name}` generator."
    return dataset_card(f"Synthetic {name} dataset", summary, counts, class_names, provenance, LICENSE, form)


def _job(
    params: Params, name: str, model, counts: list[int], device: torch.device, root: Path, mixture: dict | None = None
) -> ShardJob:
    return ShardJob(
        checkpoint=model.checkpoint_path,
        root=str(root.resolve()),
        checkpoint_sha256=model.checkpoint_sha256,
        name=name,
        class_names=tuple(model.class_names),
        counts=tuple(counts),
        seed=params.sample.seed,
        shard_size=params.sample.shard_size,
        format=params.sample.format,
        compression=params.sample.tar_compression,
        device=params.runtime.device if dask_address(params.runtime) else str(device),
        **(mixture or {}),
    )


def _mixture(params: Params, name: str, counts: list[int], checkpoint) -> dict:
    """The components of ``sample.mixture``: every training seed's selected generator, weighted by 1 / its val
    score; each class's count split by largest remainders (ties to the earlier seed)."""
    folder = Path(params.paths.models) / name
    table_path = folder / "seeds.json"
    if checkpoint is not None or not table_path.is_file():
        raise SynthdataError(
            f"sample.mixture: {table_path} not found (it draws from the generators of a run with train.seeds, "
            "not from --checkpoint); run 'synthdata train' with train.seeds, or turn sample.mixture off"
        )
    table = json.loads(table_path.read_text())
    components, weights = [], []
    for seed, score in zip(table["seeds"], table["scores"]):
        path = folder / f"seed-{seed}" / SELECTED
        components.append((str(path.resolve()), sha256_file(path)))
        weights.append(1.0 / score if score is not None and 0 < score < float("inf") else 0.0)
    if not sum(weights):
        raise SynthdataError(f"sample.mixture: no seed in {table_path} has a finite val score; train again")
    w = np.asarray(weights) / sum(weights)
    split = []
    for n in counts:
        share = n * w
        base = np.floor(share).astype(np.int64)
        extra = np.argsort(-(share - base), kind="stable")[: n - int(base.sum())]
        base[extra] += 1
        split.append(tuple(int(x) for x in base))
    parts = ", ".join(
        f"seed {s} ({sha[:12]}..., weight {x:.3f})" for s, (_, sha), x in zip(table["seeds"], components, w)
    )
    line = f"mixture of the generators of training seeds: {parts} (per image: the `checkpoint_sha256` column)"
    return {"mixture": tuple(components), "split": tuple(split), "line": line}


def _write_sharded(syn_dir: Path, job: ShardJob, params: Params, bar, shards: ShardMaker | None) -> None:
    """Every shard (its PNGs written by the worker that made it); metadata in shard order."""
    for cls in job.class_names if job.format == "imagefolder" else ():
        (syn_dir / cls).mkdir(parents=True, exist_ok=True)
    metadata, expect = MetadataWriter(syn_dir), 0
    try:
        made = shards(job) if shards else make(job, params.runtime, params.sample.workers)
        for shard in made:
            if shard.index != expect:
                raise SynthdataError(f"sample {job.name}: shard {shard.index} came back in place of {expect}")
            metadata.write(shard.metadata)
            expect += 1
            bar.update(shard.metadata.num_rows)
    finally:
        metadata.close(flush=expect == job.shards)
    if expect != job.shards:
        raise SynthdataError(f"sample {job.name}: {job.shards - expect} shard(s) never came back; run it again")
    sweep(syn_dir, job.class_names)  # files a killed worker left half-written (their shards were made again)


def _provenance(params: Params, name: str, sha: str, total: int) -> list[str]:
    seed = params.sample.seed
    seeds = (
        f"latent seeds of class k: from {seed} + k * 2**32, those the filter classifier accepted (the `seed` column)"
        if params.filter.enabled
        else f"latent seeds {seed}..{seed + total - 1} (the `seed` column)"
    )
    return [f"generator: {name}", f"checkpoint sha256: {sha}", seeds]


LICENSE = "Synthetic images made by a generator trained on the real data: same license as the real data."


def _meta(name: str, model) -> dict:
    return dict(split="train", source="synthetic", generator=name, checkpoint_sha256=model.checkpoint_sha256)


def _write_filtered(
    writer: DatasetWriter,
    model,
    clf: FilterClassifier,
    counts: list[int],
    params: Params,
    name: str,
    syn_dir: Path,
    bar,
) -> str:
    """Class by class, the candidates the filter classifier accepts; writes ``filter.json`` (acceptance rates)
    and returns the provenance line."""
    sp, acceptance, done = params.sample, [], 0
    for k, (cls, count) in enumerate(zip(model.class_names, counts)):
        drawn = 0
        for images, seeds_k, drawn in filtered_class(
            model.generate_from_seeds,
            clf,
            k,
            count,
            sp.seed + k * CLASS_STRIDE,
            sp.batch_size,
            params.filter.max_draws,
            cls,
        ):
            writer.add(
                images,
                np.full(len(seeds_k), k),
                [f"{name}-{i:07d}" for i in range(done, done + len(seeds_k))],
                seeds=seeds_k,
                **_meta(name, model),
            )
            done += len(seeds_k)
            bar.update(len(seeds_k))
        acceptance.append(
            {"class": cls, "class_id": k, "kept": count, "drawn": drawn, "acceptance_rate": count / drawn}
        )
    write_json(
        syn_dir / "filter.json",
        {
            "min_confidence": params.filter.min_confidence,
            "classifier_sha256": clf.info["sha256"],
            "acceptance_rate": sum(counts) / sum(a["drawn"] for a in acceptance),
            "per_class": acceptance,
        },
    )
    return (
        "classifier-filtered: kept only images the filter classifier (trained on "
        f"{params.paths.prepared}/train only) labels as their class; acceptance "
        + ", ".join(f"{a['class']} {a['acceptance_rate']:.1%}" for a in acceptance)
    )


def _write_augmented_tars(aug_dir: Path, syn_dir: Path, real_dir: Path, real_meta, sp: SampleParams) -> dict:
    """WebDataset form: the real train images packed into ``train-real-<k>.tar`` shards, the synthetic tars
    linked; metadata rows real first, as in the ImageFolder form. Returns the images per class."""
    metadata, counts = MetadataWriter(aug_dir), collections.Counter(real_meta["label"])
    try:
        for j, lo in enumerate(range(0, len(real_meta), sp.shard_size)):
            part = real_meta.iloc[lo : lo + sp.shard_size].copy()
            pngs = [(real_dir / f).read_bytes() for f in part["file_name"]]
            tar = tars.tar_name("train-real", j, sp.tar_compression)
            part["file_name"] = [f"{tar}/{Path(f).name}" for f in part["file_name"]]
            table = pa.Table.from_pandas(part, schema=METADATA_SCHEMA, preserve_index=False)
            (aug_dir / tar).write_bytes(tars.pack(table, pngs, sp.tar_compression))
            metadata.write(table)
        for tar_file in sorted(p for p in syn_dir.iterdir() if tars.is_shard(p)):
            link_or_copy(str(tar_file), str(aug_dir / tar_file.name))
        for batch in pq.ParquetFile(syn_dir / "metadata.parquet").iter_batches(batch_size=100_000):
            table = pa.Table.from_batches([batch], schema=METADATA_SCHEMA)
            counts.update(table.column("label").to_pylist())
            metadata.write(table)
    finally:
        metadata.close()
    return dict(counts)


def _write_augmented(
    aug_dir: Path,
    syn_dir: Path,
    real_dir: Path,
    real_meta,
    class_names: list[str],
    provenance: list[str],
    params: Params,
    name: str,
    n_synthetic: int,
) -> None:
    """The real train split plus the synthetic images (links, not copies, where the file system allows)."""
    card = functools.partial(
        dataset_card,
        f"Augmented dataset: real train split + {name}",
        f"{len(real_meta)} real training images and {n_synthetic} synthetic images; the `source` column tells "
        "them apart.",
    )
    rest = (class_names, provenance + [f"real images: {real_dir}"], LICENSE, params.sample.format)
    if params.sample.format == "webdataset":
        counts = _write_augmented_tars(aug_dir, syn_dir, real_dir, real_meta, params.sample)
        finish_dataset(aug_dir, class_names, card(counts, *rest))
        write_json(aug_dir / "params.json", resolved(params))
        return
    aug = DatasetWriter(aug_dir, class_names, workers=params.sample.workers)
    try:
        aug.add_files(real_dir, real_meta)
        for batch in pq.ParquetFile(syn_dir / "metadata.parquet").iter_batches(batch_size=20_000):
            aug.add_files(syn_dir, batch.to_pandas())
    finally:
        aug.close(card(dict(aug.counts), *rest))
    write_json(aug_dir / "params.json", resolved(params))
