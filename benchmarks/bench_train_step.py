"""Benchmark for the generators' training step on MNIST-size images: seconds per step with the model and
its batches in the default (NCHW) memory format against channels_last (NHWC; ``train`` uses it on a GPU
only), for each generator of the MNIST profile, interleaved over rounds in one process. Prints one table.

    python benchmarks/bench_train_step.py [--steps 150] [--rounds 3] [--params params-mnist.yaml]

Reads the MNIST train images from ``../shared/datasets/mnist`` (``--mnist DIR``); with no MNIST folder it
uses random 28x28 images (the step's cost does not depend on the pixels).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch

from synthdata import generators
from synthdata.params import load_params
from synthdata.runtime import BatchSampler
from synthdata.sources.mnist import FILES, _find, read_idx

REPO = Path(__file__).resolve().parents[1]


def images(folder: Path) -> tuple[torch.Tensor, torch.Tensor]:
    if folder.is_dir():
        x = read_idx(_find(folder, FILES[("train", "images")]))
        y = read_idx(_find(folder, FILES[("train", "labels")]))
        return torch.from_numpy(x.copy())[:, None], torch.from_numpy(y.astype("int64"))
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (60_000, 1, 28, 28), generator=g, dtype=torch.uint8), torch.arange(60_000) % 10


def seconds_per_step(name: str, cfg, x: torch.Tensor, y: torch.Tensor, nhwc: bool, steps: int) -> float:
    torch.manual_seed(0)
    model = generators.get(name)(cfg, tuple(x.shape[1:]), 10)
    if nhwc:
        model = model.to(memory_format=torch.channels_last)
    optimizers = model.make_optimizers()
    batches = BatchSampler(len(y), cfg.batch_size, 0)
    warmup = 10
    for step in range(warmup + steps):
        if step == warmup:
            t = time.perf_counter()
        idx = batches(step)
        real = model.real_batch(x[idx])
        if nhwc:
            real = real.contiguous(memory_format=torch.channels_last)
        model.training_step(real, y[idx], torch.Generator().manual_seed(step), optimizers)
        model.update_ema(step)
    return (time.perf_counter() - t) / steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--params", default=str(REPO / "params-mnist.yaml"))
    p.add_argument("--mnist", type=Path, default=REPO.parent / "shared" / "datasets" / "mnist")
    args = p.parse_args()
    params = load_params(args.params)
    torch.set_num_threads(params.runtime.threads or os.cpu_count() or 1)
    x, y = images(args.mnist)
    times: dict[tuple[str, bool], list[float]] = {}
    for _ in range(args.rounds):
        for name in params.generators:
            for nhwc in (False, True):
                times.setdefault((name, nhwc), []).append(
                    seconds_per_step(name, params.generator_config(name), x, y, nhwc, args.steps)
                )
    print(
        f"\n{torch.get_num_threads()} CPU threads, {args.steps} steps x {args.rounds} rounds (interleaved), "
        f"median s/step; profile {Path(args.params).name}\n"
    )
    print("| generator | batch | NCHW s/step | channels_last s/step | channels_last / NCHW |")
    print("| --- | --- | --- | --- | --- |")
    for name in params.generators:
        a, b = (statistics.median(times[(name, f)]) for f in (False, True))
        print(f"| {name} | {params.generator_config(name).batch_size} | {a:.4f} | {b:.4f} | {b / a:.2f} |")


if __name__ == "__main__":
    main()
