"""Benchmark of sharded sampling and scoring: images/s of the sample stage's shard writer (make, encode and write
in the workers, metadata in the stage process) and of evaluate's feature shards (read, decode, domain CNN,
moments) on local processes and on a Dask ``LocalCluster`` of 1 and 2 workers x 1 thread, for a generator and a
domain extractor of the MNIST profile (random weights: the cost does not depend on them).
Layouts alternate over rounds after one warm-up run each (a Dask worker imports the package and loads the model
once); prints one table (median images/s and the speed-up over one worker of the same executor).

    python benchmarks/bench_sampling.py [--images 20000] [--rounds 3] [--generator cgan]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from synthdata import checkpoint, classifier, features, generators  # noqa: E402
from synthdata.executors import tune_worker  # noqa: E402
from synthdata.params import load_params  # noqa: E402
from synthdata.sample import _write_sharded  # noqa: E402
from synthdata.shards import ShardJob, render_shard  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


class Bar:
    def update(self, n: int) -> None:
        pass


def job_for(folder: Path, out: Path, name: str, images: int, shard_size: int) -> ShardJob:
    params = load_params(REPO / "params-mnist.yaml")
    torch.manual_seed(0)
    model = generators.get(name)(params.generator_config(name), (1, 28, 28), 10)
    sha = checkpoint.save(folder, model, model.make_optimizers(), 0, {"class_names": [str(i) for i in range(10)]})
    per = images // 10
    classes = tuple(str(i) for i in range(10))
    return ShardJob(
        checkpoint=str(folder / checkpoint.FILE),
        root=str(out),
        checkpoint_sha256=sha,
        name=name,
        class_names=classes,
        counts=(per,) * 10,
        seed=0,
        shard_size=shard_size,
    )


def timed(job: ShardJob, out: Path, workers: int, address: str | None) -> float:
    params = load_params(
        REPO / "params-mnist.yaml", overrides={"runtime.dask_address": address, "sample.workers": workers}
    )
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    os.sync()  # the last run's deletions reach the disk before this one is timed (else they slow its writes)
    t = time.perf_counter()
    _write_sharded(out, job, params, Bar(), None)
    return job.total / (time.perf_counter() - t)


def rendered(job: ShardJob, k: int) -> int:
    """Shard k made and encoded in memory (no files): its PNG bytes."""
    return sum(len(png) for png in render_shard(job, k)[1])


def timed_in_memory(job: ShardJob, workers: int, address: str | None) -> float:
    from concurrent.futures import ProcessPoolExecutor

    from distributed import Client

    t = time.perf_counter()
    if address:
        with Client(address) as client:
            client.run(tune_worker)
            t = time.perf_counter()
            client.gather(client.map(rendered, [job] * job.shards, range(job.shards), pure=False))
    elif workers == 1:
        [rendered(job, k) for k in range(job.shards)]
    else:
        with ProcessPoolExecutor(workers, initializer=torch.set_num_threads, initargs=(1,)) as pool:
            t = time.perf_counter()
            list(pool.map(rendered, [job] * job.shards, range(job.shards)))
    return job.total / (time.perf_counter() - t)


def extractor_for(folder: Path) -> features.Extractor:
    """A domain extractor of the MNIST profile's size (random weights), saved where ``evaluate`` looks for it."""
    cfg = load_params(REPO / "params-mnist.yaml").evaluate.classifier
    torch.manual_seed(0)
    model = classifier.SmallCNN(1, 10, (28, 28), cfg.width, cfg.feature_dim)
    info = {"in_channels": 1, "num_classes": 10, "image_hw": [28, 28], "width": cfg.width}
    classifier.save(folder / features.DOMAIN_FILE, model, {**info, "feature_dim": cfg.feature_dim})
    return features.build(_feature_params(folder, 1, None), torch.device("cpu"))


def _feature_params(reference: Path, workers: int, address: str | None, shard_size: int = 1000):
    over = {"paths.reference": str(reference), "runtime.dask_address": address, "evaluate.workers": workers}
    over["evaluate.shard_size"] = shard_size
    return load_params(REPO / "params-mnist.yaml", overrides=over)


def timed_features(extractor, reference: Path, out: Path, files: list[str], workers: int, address, size) -> float:
    import numpy as np

    params = _feature_params(reference, workers, address, size)
    t = time.perf_counter()
    features.of_dataset(extractor, params, out, files, np.arange(0, len(files), 3), "cpu")
    return len(files) / (time.perf_counter() - t)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=20_000)
    p.add_argument("--shard-size", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--generator", default="cgan")
    p.add_argument("--dir", default=str(REPO), help="where the datasets are written (default: the repository)")
    args = p.parse_args()
    from distributed import LocalCluster

    torch.set_num_threads(1)
    rates: dict[str, list[float]] = {}
    memory: dict[str, list[float]] = {}
    feats: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        tmp = Path(tmp)
        job = job_for(tmp / "model", tmp / "out", args.generator, args.images, args.shard_size)
        with (
            LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as one,
            LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as two,
        ):
            layouts = {
                "local, 1 process": (1, None),
                "local, 2 processes": (2, None),
                "Dask, 1 worker x 1 thread": (1, one.scheduler_address),
                "Dask, 2 workers x 1 thread": (1, two.scheduler_address),
            }
            for workers, address in layouts.values():  # warm: workers import the package and load the model
                timed(job, tmp / "out", workers, address)
            for _ in range(args.rounds):
                for label, (workers, address) in layouts.items():
                    rates.setdefault(label, []).append(timed(job, tmp / "out", workers, address))
                    memory.setdefault(label, []).append(timed_in_memory(job, workers, address))
            (tmp / "reference").mkdir()
            extractor = extractor_for(tmp / "reference")
            import pandas as pd

            files = pd.read_parquet(tmp / "out" / "metadata.parquet")["file_name"].tolist()
            for workers, address in layouts.values():  # warm: the workers load the extractor once
                timed_features(extractor, tmp / "reference", tmp / "out", files, workers, address, args.shard_size)
            for _ in range(args.rounds):
                for label, (workers, address) in layouts.items():
                    rate = timed_features(
                        extractor, tmp / "reference", tmp / "out", files, workers, address, args.shard_size
                    )
                    feats.setdefault(label, []).append(rate)
    print(f"\n{args.images} images of 28x28 ({args.generator}, MNIST profile), shards of {args.shard_size} ")
    print("(sampling and feature extraction), kept features: every third row, ")
    print(f"{args.rounds} rounds (alternating), median images/s\n")
    print(
        "| layout | to disk: images/s | speed-up | in memory (made + PNG-encoded): images/s | speed-up "
        "| evaluate features (read + decode + CNN + moments): images/s | speed-up |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for label in rates:
        base = "local, 1 process" if label.startswith("local") else "Dask, 1 worker x 1 thread"
        cells = []
        for table in (rates, memory, feats):
            rate = statistics.median(table[label])
            cells += [f"{rate:,.0f}", f"{rate / statistics.median(table[base]):.2f}x"]
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
