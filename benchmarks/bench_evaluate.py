"""Benchmark for scoring (issue 3). Prints one table:

- the Fréchet distance on 2048-d features: synthdata's eigenvalue method against ``scipy.linalg.sqrtm``,
  side by side in this run (target: at most a fifth of sqrtm's time), and their agreement;
- feature-extraction throughput (domain CNN at 8x8 and 28x28; Inception-v3 pool3 at 28x28 with random
  weights, since weights cannot be downloaded here), on the CPU and on a GPU when one is present;
- the whole evaluate stage (``reference`` + ``evaluate`` for every generator) on the default digits
  configuration, timed from the CLI (target: at most 3 minutes). It scores the outputs of ``dvc repro``
  in this checkout (data/), which it runs first if they are missing.

    python benchmarks/bench_evaluate.py [--skip-stage] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]


def bench_frechet(repeats: int) -> list[tuple]:
    import scipy.linalg

    from synthdata.metrics import FeatureStats, frechet_distance

    rng = np.random.default_rng(0)
    d = 2048
    stats = []
    for _ in range(2):
        x = rng.normal(size=(4096, d)) @ (rng.normal(size=(d, d)) / np.sqrt(d)) + rng.normal(size=d)
        stats.append(FeatureStats.of(np.abs(x)))  # ReLU-like features, full rank
    a, b = stats
    ours, ref = [], []
    for _ in range(repeats):  # interleaved, so noise on the machine hits both alike
        t = time.perf_counter()
        value = frechet_distance(a, b)
        ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        covmean = scipy.linalg.sqrtm(a.sigma @ b.sigma).real
        ref_value = float(((a.mu - b.mu) ** 2).sum() + np.trace(a.sigma) + np.trace(b.sigma) - 2 * np.trace(covmean))
        ref.append(time.perf_counter() - t)
    o, r = float(np.median(ours)), float(np.median(ref))
    rel = abs(value - ref_value) / abs(ref_value)
    return [
        (
            "Fréchet distance, 2048-d, eigenvalue method (synthdata)",
            f"{o:.2f} s",
            f"{o / r:.1%} of sqrtm; rel. diff {rel:.1e}",
            "<= 20% of sqrtm",
        ),
        ("Fréchet distance, 2048-d, scipy.linalg.sqrtm", f"{r:.2f} s", "100%", "-"),
    ]


def _rate(ex, images: torch.Tensor, label: str) -> tuple:
    """Throughput of one extractor, after one warm-up batch."""
    ex(images[: ex.batch])
    t = time.perf_counter()
    ex(images)
    s = time.perf_counter() - t
    return (label, f"{s:.2f} s / {len(images)}", f"{len(images) / s:.1f} img/s", "-")


def bench_features(device: torch.device) -> list[tuple]:
    import warnings

    from synthdata.classifier import SmallCNN
    from synthdata.features import Extractor

    rows = []
    for size in (8, 28):
        model = SmallCNN(1, 10, (size, size), 16, 64).eval().to(device)
        ex = Extractor(model, lambda x, m=model: m.features(SmallCNN.normalize(x)), 500, device)
        images = torch.randint(0, 256, (20000, 1, size, size), dtype=torch.uint8)
        rows.append(_rate(ex, images, f"features: domain CNN (width 16), {size}x{size}, {device.type}"))
    import torch_fidelity.feature_extractor_inceptionv3 as fe

    orig = (fe.load_state_dict_from_url, fe.FeatureExtractorInceptionV3.load_state_dict)
    fe.load_state_dict_from_url = lambda *a, **k: {}
    fe.FeatureExtractorInceptionV3.load_state_dict = lambda self, sd, *a, **k: None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            net = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"]).to(device).eval()
    finally:
        fe.load_state_dict_from_url, fe.FeatureExtractorInceptionV3.load_state_dict = orig
    n = 256 if device.type == "cpu" else 4096
    images = torch.randint(0, 256, (n, 3, 28, 28), dtype=torch.uint8)
    rows.append(
        _rate(
            Extractor(net, lambda x: net(x)[0], 64, device),
            images,
            f"features: Inception-v3 pool3 (resized to 299), {device.type}",
        )
    )
    return rows


def bench_stage() -> list[tuple]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    names = __import__("yaml").safe_load((REPO / "params.yaml").read_text())["generators"]
    if not all((REPO / "data/synthetic" / n / "metadata.parquet").is_file() for n in names):
        subprocess.run(["dvc", "repro", "sample"], cwd=REPO, check=True, env=env)
    rows, total = [], 0.0
    for args in [["reference"]] + [["evaluate", "--generator", n] for n in names]:
        t = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "synthdata", *args], cwd=REPO, check=True, env=env, stdout=subprocess.DEVNULL
        )
        s = time.perf_counter() - t
        total += s
        rows.append((f"synthdata {' '.join(args)} (default digits config)", f"{s:.1f} s", "-", "-"))
    rows.append(("whole evaluate stage: reference + evaluate of every generator", f"{total:.1f} s", "-", "<= 180 s"))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-stage", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    rows = bench_frechet(args.repeats)
    rows += bench_features(torch.device("cpu"))
    if torch.cuda.is_available():
        rows += bench_features(torch.device("cuda"))
    if not args.skip_stage:
        rows += bench_stage()
    print(
        f"\ncores: {os.cpu_count()}  torch {torch.__version__}  threads {torch.get_num_threads()}  "
        f"gpu: {torch.cuda.get_device_name() if torch.cuda.is_available() else 'none'}\n"
    )
    print("| measurement | time | rate / ratio | target |\n| --- | --- | --- | --- |")
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
