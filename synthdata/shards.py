"""Sharded sampling: shard ``k`` of a synthetic dataset is a pure function of (checkpoint, plan, k).

Row ``i`` of the plan has its class and latent seed from ``i`` alone (:class:`Plan`), shard ``k`` holds rows
``[k * shard_size, (k + 1) * shard_size)``. A worker writes the shard's files under names that follow from the
row index (each file atomically: a temporary name, then a rename) and returns its metadata rows; the stage process
writes the metadata in shard order. So the dataset is byte-identical whatever the number of workers and wherever
they ran, and a shard made twice (Dask re-runs the tasks of a worker that died, prefect #15442) rewrites the same
bytes under the same names: it duplicates nothing. :func:`sweep` removes what a killed worker left half-written.

Executors: local processes (``sample.workers``, forked, one thread each) by default, or a Dask cluster when
``runtime.dask_address`` (or ``SYNTHDATA_DASK_ADDRESS``) names a scheduler; its workers need this package, read
access to the checkpoint and write access to the dataset's temporary folder (shared storage).
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import torch

from synthdata import executors, pngio, tars
from synthdata.dataset import METADATA_SCHEMA
from synthdata.errors import SynthdataError
from synthdata.fsutil import atomic_write_bytes


class Plan:
    """Labels and latent seeds of rows ``[lo, hi)``, made on demand: memory does not grow with the count.

    Row i is of the class whose cumulative count first exceeds i, with latent seed ``seed + i``."""

    def __init__(self, counts: list[int], seed: int):
        self.bounds = np.cumsum(np.asarray(counts, dtype=np.int64))
        self.total = int(self.bounds[-1]) if len(self.bounds) else 0
        self.seed = seed

    def labels(self, lo: int, hi: int) -> np.ndarray:
        return np.searchsorted(self.bounds, np.arange(lo, hi, dtype=np.int64), side="right")

    def seeds(self, lo: int, hi: int) -> np.ndarray:
        return self.seed + np.arange(lo, hi, dtype=np.int64)


@dataclass(frozen=True)
class ShardJob:
    """Everything a worker needs to make any shard (small and picklable: it travels to Dask workers)."""

    checkpoint: str  # the checkpoint file, readable by every worker
    root: str  # the dataset's temporary folder, writable by every worker
    checkpoint_sha256: str
    name: str  # generator name: file ids are <name>-<row:07d>
    class_names: tuple[str, ...]
    counts: tuple[int, ...]
    seed: int
    shard_size: int
    device: str = "cpu"  # a Dask worker uses its own runtime.device choice ("auto": its GPU when it has one)
    level: int = 1  # PNG compression level
    format: str = "imagefolder"  # or "webdataset": shard k is the tar train-<k:06d>.tar (synthdata.tars)
    compression: str = "none"  # webdataset tars: none | gzip (train-<k:06d>.tar.gz)
    # a mixture (sample.mixture): (checkpoint, sha256) of every component, and per class how many of its rows each
    # makes, in order (class k's first split[k][0] rows from component 0, ...); empty: ``checkpoint`` makes all
    mixture: tuple[tuple[str, str], ...] = ()
    split: tuple[tuple[int, ...], ...] = ()

    @property
    def total(self) -> int:
        return int(sum(self.counts))

    @property
    def shards(self) -> int:
        return -(-self.total // self.shard_size)

    def rows(self, k: int) -> tuple[int, int]:
        return k * self.shard_size, min((k + 1) * self.shard_size, self.total)

    def components(self, rows: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Which mixture component makes each row (from the row's place in its class alone)."""
        starts = np.concatenate([[0], np.cumsum(self.counts)[:-1]]).astype(np.int64)
        bounds = np.cumsum(np.asarray(self.split, dtype=np.int64), axis=1)  # (classes, components)
        return ((rows - starts[labels])[:, None] >= bounds[labels]).sum(axis=1)


@dataclass
class Shard:
    index: int
    metadata: pa.Table  # METADATA_SCHEMA rows, in row order; the files are written


def sweep(root: str | os.PathLike, class_names) -> int:
    """Remove the temporary files a killed worker left (in the class folders, or beside the tars)."""
    stale = [p for c in ("", *class_names) for p in Path(root, c).glob(".*.tmp-*")]  # fsutil's temporary names
    for p in stale:
        p.unlink(missing_ok=True)
    return len(stale)


@functools.lru_cache(maxsize=8)
def _model(checkpoint: str, sha256: str, device: str):
    from synthdata.checkpoint import load_generator
    from synthdata.runtime import pick_device

    model = load_generator(checkpoint, device=pick_device(device))
    if model.checkpoint_sha256 != sha256:
        raise SynthdataError(f"{checkpoint}: changed while sampling (sha256 {model.checkpoint_sha256[:12]}...)")
    return model


def _generate(job: ShardJob, rows: np.ndarray, labels: np.ndarray, seeds: np.ndarray) -> tuple[np.ndarray, list]:
    """The rows' images and the sha256 of the checkpoint that made each (a row's image depends on its label and
    seed alone, however the rows are grouped: ``Generator.generate_from_seeds``)."""
    if not job.mixture:
        model = _model(job.checkpoint, job.checkpoint_sha256, job.device)
        return model.generate_from_seeds(torch.from_numpy(labels), torch.from_numpy(seeds)).numpy(), [
            job.checkpoint_sha256
        ] * len(rows)
    comp = job.components(rows, labels)
    images = None
    for c in np.unique(comp):
        path, sha = job.mixture[c]
        at = np.flatnonzero(comp == c)
        part = _model(path, sha, job.device).generate_from_seeds(
            torch.from_numpy(labels[at]), torch.from_numpy(seeds[at])
        )
        if images is None:
            images = np.empty((len(rows), *part.shape[1:]), dtype=np.uint8)
        images[at] = part.numpy()
    return images, [job.mixture[c][1] for c in comp]


def render_shard(job: ShardJob, k: int) -> tuple[pa.Table, list[bytes]]:
    """Shard ``k`` in memory: its metadata rows and PNG bytes (a pure function of ``job`` and ``k``)."""
    lo, hi = job.rows(k)
    plan = Plan(list(job.counts), job.seed)
    labels, seeds = plan.labels(lo, hi), plan.seeds(lo, hi)
    images, shas = _generate(job, np.arange(lo, hi, dtype=np.int64), labels, seeds)
    n = hi - lo
    folder = (
        [tars.tar_name("train", k, job.compression)] * n
        if job.format == "webdataset"
        else [job.class_names[y] for y in labels]
    )
    table = pa.table(
        {
            "file_name": [f"{f}/{job.name}-{i:07d}.png" for f, i in zip(folder, range(lo, hi))],
            "label": [job.class_names[y] for y in labels],
            "label_id": labels.astype(np.int64),
            "split": ["train"] * n,
            "source": ["synthetic"] * n,
            "generator": [job.name] * n,
            "checkpoint_sha256": shas,
            "seed": seeds,
            "origin": pa.nulls(n, pa.string()),
            "pixel_sha256": [hashlib.sha256(a.tobytes()).hexdigest() for a in images],
        },
        schema=METADATA_SCHEMA,
    )
    return table, [pngio.encode_png(a, job.level) for a in images]


def make_shard(job: ShardJob, k: int) -> Shard:
    """Shard ``k`` rendered and its files (PNGs, or one tar) written under ``job.root``, each atomically; its
    metadata."""
    table, pngs = render_shard(job, k)
    if job.format == "webdataset":
        tar = tars.tar_name("train", k, job.compression)
        atomic_write_bytes(os.path.join(job.root, tar), tars.pack(table, pngs, job.compression), durable=False)
        return Shard(k, table)
    names = table.column("file_name").to_pylist()
    for cls in {name.split("/", 1)[0] for name in names}:
        os.makedirs(os.path.join(job.root, cls), exist_ok=True)
    for name, data in zip(names, pngs):
        atomic_write_bytes(os.path.join(job.root, name), data, durable=False)
    return Shard(k, table)


def make(job: ShardJob, runtime, workers: int) -> Iterator[Shard]:
    """Every shard, in index order, made where ``runtime`` says (:func:`synthdata.executors.run`); on a GPU the
    stage process makes them itself."""
    inline = job.device.startswith("cuda")
    return executors.run(functools.partial(make_shard, job), range(job.shards), runtime, workers, inline)
