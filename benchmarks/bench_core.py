"""Benchmark for the core (issue 2): training time on the default digits config, and the rate of
writing a 100,000-image 28x28 labeled dataset (sampling included) against a bare Pillow loop writing the
same number of ready-made PNGs on every core, measured side by side and interleaved. Prints a table.

    python benchmarks/bench_core.py [--n 100000] [--rounds 2] [--skip-train]

Each measurement runs in its own process; peak RSS is that process's VmHWM plus its largest worker's.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SCRATCH = ""


def _peak_mb() -> dict:
    """Peak RSS of this process (VmHWM: unlike ru_maxrss it is not inherited across exec) and the
    largest peak of its finished worker processes (forked: they share the parent's library pages, which
    both figures count; ``import torch`` alone is ~0.5 GB of them)."""
    hwm = next(
        int(line.split()[1]) for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM:")
    )
    return {"peak_rss_mb": hwm / 1024, "worker_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}


def _ready_made(n: int) -> np.ndarray:
    """n sparse binary 28x28 uint8 images (N, 1, 28, 28), made without a float64 temporary."""
    rng = np.random.default_rng(0)
    out = np.empty((n, 1, 28, 28), np.uint8)
    for lo in range(0, n, 10_000):
        out[lo : lo + 10_000] = (rng.integers(0, 5, out[lo : lo + 10_000].shape, dtype=np.uint8) == 0) * np.uint8(255)
    return out


def _pillow_worker(args):
    folder, images, lo = args
    from PIL import Image

    for i, a in enumerate(images):
        Image.fromarray(a).save(f"{folder}/{lo + i}.png")


def measure_pillow(n: int, work: Path) -> dict:
    """The bare loop: ready-made uint8 images, Pillow's PNG writer, one process per core."""
    from concurrent.futures import ProcessPoolExecutor

    images = _ready_made(n)[:, 0]
    cores = os.cpu_count() or 1
    chunks = [(str(work), images[lo : lo + n // cores], lo) for lo in range(0, n, n // cores)]
    with ProcessPoolExecutor(cores) as pool:
        t = time.perf_counter()
        list(pool.map(_pillow_worker, chunks))
        seconds = time.perf_counter() - t
    return {"seconds": seconds, **_peak_mb()}


def measure_writer(n: int, work: Path) -> dict:
    """synthdata's DatasetWriter alone, on the same ready-made images (no generator)."""
    from synthdata.dataset import DatasetWriter

    images = _ready_made(n)
    t = time.perf_counter()
    writer = DatasetWriter(work, [str(i) for i in range(10)])
    for lo in range(0, n, 1000):
        writer.add(
            images[lo : lo + 1000],
            np.arange(lo, min(lo + 1000, n)) % 10,
            [f"s-{i:07d}" for i in range(lo, min(lo + 1000, n))],
            split="train",
            source="synthetic",
            generator="none",
            checkpoint_sha256="0" * 64,
            seeds=np.arange(lo, min(lo + 1000, n)),
        )
    writer.close("# benchmark\n")
    return {"seconds": time.perf_counter() - t, **_peak_mb()}


def setup_sampling(work: Path, name: str, width: int | None) -> Path:
    """A 28x28 generator with the default params' architecture (weights don't change the cost)."""
    from synthdata import checkpoint, generators, prepare
    from synthdata.params import load_params

    rng = np.random.default_rng(0)
    np.savez(work / "real.npz", x=(rng.random((300, 28, 28)) * 255).astype(np.uint8), y=np.arange(300) % 10)
    params = load_params(
        REPO / "params.yaml",
        {
            "data.source": "npz",
            "data.path": str(work / "real.npz"),
            **{f"paths.{k}": str(work / k) for k in ("prepared", "models", "synthetic", "augmented")},
        },
    )
    prepare.run(params)
    cls = generators.get(name)
    config = params.generator_config(name)
    model = cls(config.model_copy(update={"width": width or config.width}), (1, 28, 28), 10)
    (work / "models" / name).mkdir(parents=True)
    checkpoint.save(
        work / "models" / name, model, model.make_optimizers(), 0, {"class_names": [str(i) for i in range(10)]}
    )
    return work


def measure_sample(n: int, work: Path, name: str) -> dict:
    from synthdata import sample
    from synthdata.params import load_params

    params = load_params(
        REPO / "params.yaml",
        {
            "data.source": "npz",
            "data.path": str(work / "real.npz"),
            "runtime.device": "cpu",
            "sample.per_class": n // 10,
            **{f"paths.{k}": str(work / k) for k in ("prepared", "models", "synthetic", "augmented")},
        },
    )
    t = time.perf_counter()
    sample.run(params, name, progress=False)
    return {"seconds": time.perf_counter() - t, **_peak_mb()}


def _child(kind: str, n: int, name: str | None, width: int | None = None) -> dict:
    """One measurement in a fresh process; then the disk is flushed (untimed) so that the writeback of
    one measurement's files does not slow the next one down."""
    cmd = [sys.executable, __file__, "--child", kind, "--n", str(n), "--scratch", SCRATCH]
    cmd += (["--name", name] if name else []) + (["--width", str(width)] if width else [])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    os.sync()
    return json.loads(out.strip().splitlines()[-1])


def bench_train() -> list[tuple]:
    rows = []
    with tempfile.TemporaryDirectory(dir=REPO) as tmp:
        paths = {f"paths.{k}": str(Path(tmp) / k) for k in ("prepared", "models", "synthetic", "augmented")}
        from synthdata import prepare, train
        from synthdata.params import load_params

        params = load_params(REPO / "params.yaml", paths)
        prepare.run(params)
        for name in params.generators:
            t = time.perf_counter()
            s = train.run(params, name, progress=False)
            rows.append(
                (
                    f"train {name} (default digits config, {s['steps']} steps)",
                    f"{time.perf_counter() - t:.1f} s",
                    f"{s['images_per_s']:.0f} img/s",
                    "<= 120 s",
                )
            )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--child")
    ap.add_argument("--name")
    ap.add_argument("--width", type=int, help="generator width for the sampling rows (default: params.yaml)")
    ap.add_argument("--scratch", help=argparse.SUPPRESS)
    ap.add_argument("--light-width", type=int, default=8, help="also time sampling at this width (0: skip)")
    args = ap.parse_args()
    if args.child:  # the parent deletes the output later: deleting 10^5 files loads the disk for a while
        work = Path(tempfile.mkdtemp(dir=args.scratch, prefix="run-"))
        if args.child in ("pillow", "writer"):
            (work / "out").mkdir()
            result = (measure_pillow if args.child == "pillow" else measure_writer)(args.n, work / "out")
        else:
            setup_sampling(work, args.name, args.width)
            result = measure_sample(args.n, work, args.name)
        print(json.dumps(result))
        return

    import torch

    global SCRATCH
    SCRATCH = tempfile.mkdtemp(dir=REPO, prefix=".bench-")
    try:
        rows = [] if args.skip_train else bench_train()
        _measure(args, rows)
    finally:
        shutil.rmtree(SCRATCH, ignore_errors=True)
    print(
        f"\ncores: {os.cpu_count()}  torch {torch.__version__}  threads {torch.get_num_threads()}  "
        f"device: {'cuda' if torch.cuda.is_available() else 'cpu'}  rounds: {args.rounds} (median)\n"
    )
    print("| measurement | time | rate / ratio | target |\n| --- | --- | --- | --- |")
    for r in rows:
        print("| " + " | ".join(r) + " |")


def _measure(args, rows: list) -> None:
    widths = [None] + ([args.light_width] if args.light_width else [])
    kinds = [("pillow", None, None), ("writer", None, None)]
    kinds += [("sample", name, w) for w in widths for name in ("cgan", "cvae")]
    results: dict = {k: [] for k in kinds}
    for _ in range(args.rounds):  # interleaved, so slow spells of the disk hit every row alike
        for k in kinds:
            results[k].append(_child(k[0], args.n, k[1], k[2]))
    small = {k: _child(k[0], args.n // 5, k[1], k[2]) for k in kinds[1:]}
    base = np.median([r["seconds"] for r in results[kinds[0]]])
    for k in kinds:
        sec = float(np.median([r["seconds"] for r in results[k]]))
        label = {
            "pillow": "bare Pillow loop, ready-made PNGs",
            "writer": "synthdata DatasetWriter, ready-made images",
            "sample": f"synthdata sample {k[1]} (28x28, width {k[2] or 'default'})",
        }[k[0]]
        rss = max(r["peak_rss_mb"] for r in results[k])
        wrss = max(r["worker_rss_mb"] for r in results[k])
        mem = f"peak RSS main {rss:.0f} MB / worker {wrss:.0f} MB"
        if k in small:
            mem += f" (at {args.n // 5}: {small[k]['peak_rss_mb']:.0f} / {small[k]['worker_rss_mb']:.0f} MB)"
        rows.append(
            (
                f"{label}: {args.n} images",
                f"{sec:.1f} s ({args.n / sec:.0f} img/s)",
                f"{base / sec:.0%} of bare loop; {mem}",
                ">= 80%" if k[0] == "sample" else "-",
            )
        )


if __name__ == "__main__":
    main()
