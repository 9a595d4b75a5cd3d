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

import ctypes
import functools
import hashlib
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import torch

from synthdata import pngio, tars
from synthdata.dataset import METADATA_SCHEMA
from synthdata.errors import SynthdataError
from synthdata.fsutil import atomic_write_bytes
from synthdata.procs import die_with_parent

DASK_ADDRESS_ENV = "SYNTHDATA_DASK_ADDRESS"


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

    @property
    def total(self) -> int:
        return int(sum(self.counts))

    @property
    def shards(self) -> int:
        return -(-self.total // self.shard_size)

    def rows(self, k: int) -> tuple[int, int]:
        return k * self.shard_size, min((k + 1) * self.shard_size, self.total)


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


@functools.lru_cache(maxsize=2)
def _model(checkpoint: str, sha256: str, device: str):
    from synthdata.checkpoint import load_generator
    from synthdata.runtime import pick_device

    model = load_generator(checkpoint, device=pick_device(device))
    if model.checkpoint_sha256 != sha256:
        raise SynthdataError(f"{checkpoint}: changed while sampling (sha256 {model.checkpoint_sha256[:12]}...)")
    return model


def render_shard(job: ShardJob, k: int) -> tuple[pa.Table, list[bytes]]:
    """Shard ``k`` in memory: its metadata rows and PNG bytes (a pure function of ``job`` and ``k``)."""
    lo, hi = job.rows(k)
    plan = Plan(list(job.counts), job.seed)
    labels, seeds = plan.labels(lo, hi), plan.seeds(lo, hi)
    model = _model(job.checkpoint, job.checkpoint_sha256, job.device)
    images = model.generate_from_seeds(torch.from_numpy(labels), torch.from_numpy(seeds)).numpy()
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
            "checkpoint_sha256": [job.checkpoint_sha256] * n,
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


def dask_address(runtime) -> str | None:
    return os.environ.get(DASK_ADDRESS_ENV) or getattr(runtime, "dask_address", None) or None


def _init_local(parent: int) -> None:
    die_with_parent(parent)
    torch.set_num_threads(1)  # one process per core


def run_local(job: ShardJob, workers: int) -> Iterator[Shard]:
    """Shards in index order from ``workers`` forked processes (a bounded number in flight); on a GPU the
    stage process makes them itself (CUDA does not survive a fork)."""
    if job.device.startswith("cuda") or workers == 1 or job.shards == 1:
        yield from (make_shard(job, k) for k in range(job.shards))
        return
    ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else None)
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_local, initargs=(os.getpid(),)) as pool:
        pending, submitted = {}, 0
        for k in range(job.shards):
            while submitted < job.shards and submitted < k + 2 * workers:
                pending[submitted] = pool.submit(make_shard, job, submitted)
                submitted += 1
            yield pending.pop(k).result()


def tune_worker() -> None:
    """Run on each Dask worker: one torch thread (parallelism comes from the worker's task threads), and glibc's
    dynamic mmap threshold back: Dask's nanny sets ``MALLOC_TRIM_THRESHOLD_``, which freezes that threshold at
    128 KiB, so every activation tensor is a fresh mmap and sampling runs at half speed (measured:
    benchmarks/bench_sampling.py)."""
    torch.set_num_threads(1)
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None)
        libc.mallopt(-3, 64 << 20)  # M_MMAP_THRESHOLD: tensors below 64 MiB come from the reused heap
        libc.mallopt(-1, 128 << 20)  # M_TRIM_THRESHOLD: give memory back above 128 MiB of free heap


def run_dask(job: ShardJob, address: str) -> Iterator[Shard]:
    """Shards from a Dask cluster, in the order they finish (a shard that comes back twice is dropped)."""
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise SynthdataError("runtime.dask_address is set but the 'distributed' package is not installed") from None
    try:
        client = Client(address, timeout="20s")
    except (OSError, TimeoutError) as exc:
        raise SynthdataError(f"runtime.dask_address: no Dask scheduler at {address} ({exc}); start one or unset it")
    with client:
        client.run(tune_worker)
        futures = client.map(make_shard, [job] * job.shards, range(job.shards), pure=False, retries=3)
        seen: set[int] = set()
        for future in as_completed(futures):
            shard = future.result()
            if shard.index not in seen:
                seen.add(shard.index)
                yield shard
            future.release()
