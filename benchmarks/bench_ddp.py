"""Benchmark of distributed training on the CPU: seconds per step of 2 processes x 1 thread (torchrun, gloo,
DDP) against 1 process x 2 threads, at the same global batch, for each generator of a profile. Each timing
is a fresh process (group) running the real :class:`~synthdata.trainer.Trainer`; the two layouts alternate over
rounds. Prints one table (median s/step and the ratio).

    python benchmarks/bench_ddp.py [--steps 200] [--rounds 3] [--params params-mnist.yaml]

Images: the MNIST train split from ``../shared/datasets/mnist`` when present, else random images of the
profile's size (a step's cost does not depend on the pixels).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_train_step import images  # noqa: E402
from synthdata import distributed, generators  # noqa: E402
from synthdata.params import load_params  # noqa: E402
from synthdata.trainer import Trainer  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def digits() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy((d.images * (255 / 16)).round().astype("uint8"))[:, None]
    return x, torch.from_numpy(d.target.astype("int64"))


def worker(args: argparse.Namespace) -> None:
    """One timing: ``--warmup`` then ``--steps`` steps; rank 0 prints {"s_per_step": ...}."""
    world, _ = distributed.start(torch.device("cpu"), threads=2)  # 2 threads shared by the processes
    if not world.distributed:
        torch.set_num_threads(2)
    params = load_params(args.params)
    cfg = params.generator_config(args.generator)
    x, y = digits() if params.data.source == "sklearn-digits" else images(args.mnist)
    torch.manual_seed(0)
    model = generators.get(args.generator)(cfg, tuple(x.shape[1:]), 10)
    trainer = Trainer(model, model.make_optimizers(), x, y, seed=0, name=args.generator, world=world)
    trainer.fit(0, args.warmup)
    world.barrier()
    t = time.perf_counter()
    trainer.fit(args.warmup, args.warmup + args.steps)
    world.barrier()
    seconds = (time.perf_counter() - t) / args.steps
    if world.main:
        print(json.dumps({"s_per_step": seconds, "threads": torch.get_num_threads(), "world": world.size}))
    distributed.stop(world)


def timing(args: argparse.Namespace, name: str, nproc: int) -> float:
    me = [str(Path(__file__).resolve()), "--worker", "--generator", name, "--params", args.params]
    me += ["--steps", str(args.steps), "--mnist", str(args.mnist)]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
    cmd = launcher + me if nproc > 1 else [sys.executable] + me
    env = {**os.environ, "OMP_NUM_THREADS": str(2 // nproc)}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["s_per_step"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--params", default=str(REPO / "params-mnist.yaml"))
    p.add_argument("--mnist", type=Path, default=REPO.parent / "shared" / "datasets" / "mnist")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--generator", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args)
    params = load_params(args.params)
    times: dict[tuple[str, int], list[float]] = {}
    for _ in range(args.rounds):
        for name in params.generators:
            for nproc in (1, 2):
                times.setdefault((name, nproc), []).append(timing(args, name, nproc))
    print(f"\n{args.steps} steps x {args.rounds} rounds (alternating), median; profile {Path(args.params).name}\n")
    print("| generator | global batch | 1 process x 2 threads | 2 processes x 1 thread (DDP) | 2x1 / 1x2 |")
    print("| --- | --- | --- | --- | --- |")
    for name in params.generators:
        one, two = (statistics.median(times[(name, n)]) for n in (1, 2))
        batch = params.generator_config(name).batch_size
        print(f"| {name} | {batch} | {one * 1e3:.1f} ms | {two * 1e3:.1f} ms | {two / one:.2f}x |")


if __name__ == "__main__":
    main()
