"""Benchmark of the two dataset forms at scale: a synthetic dataset of ``--images`` 28x28 images (the MNIST-profile
cGAN, random weights) written by the sample stage's shard writer as an ImageFolder tree and as WebDataset tars,
then versioned the way a release is: ``dvc add`` (hash + cache), ``dvc push`` to a local remote, and ``dvc get``
into a fresh folder. Prints one table with each step's seconds and the ImageFolder / WebDataset ratio.

    python benchmarks/bench_storage.py [--images 200000] [--shard-size 2500] [--dir PATH]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_sampling import Bar, job_for  # noqa: E402
from synthdata.params import load_params  # noqa: E402
from synthdata.sample import _write_sharded  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def sh(*argv: str, cwd: Path) -> float:
    t = time.perf_counter()
    subprocess.run(argv, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - t


def measure(label: str, tmp: Path, model: Path, images: int, shard_size: int) -> dict[str, float]:
    form, _, compression = label.partition("+")
    repo = tmp / label / "repo"
    (repo / "data" / "ds").mkdir(parents=True)
    sh("git", "init", "-q", cwd=repo)
    sh(sys.executable, "-m", "dvc", "init", "-q", cwd=repo)
    sh(sys.executable, "-m", "dvc", "remote", "add", "-d", "local", str(tmp / label / "remote"), cwd=repo)
    job = job_for(model, repo / "data" / "ds", "cgan", images, shard_size)
    job = type(job)(**{**job.__dict__, "format": form, "compression": compression or "none"})
    params = load_params(REPO / "params-mnist.yaml", overrides={"sample.workers": 2})
    os.sync()
    t = time.perf_counter()
    _write_sharded(repo / "data" / "ds", job, params, Bar())
    os.sync()
    out = {"write": time.perf_counter() - t}
    files = sum(1 for p in (repo / "data" / "ds").rglob("*") if p.is_file())
    out["files"] = files
    out["dvc add"] = sh(sys.executable, "-m", "dvc", "add", "-q", "data/ds", cwd=repo)
    out["dvc push"] = sh(sys.executable, "-m", "dvc", "push", "-q", cwd=repo)
    sh("git", "add", "-A", cwd=repo)
    sh("git", "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-q", "-m", "ds", cwd=repo)
    shutil.rmtree(repo / ".dvc" / "cache")  # dvc get reads the remote, as another team's machine would
    out["dvc get"] = sh(
        sys.executable, "-m", "dvc", "get", str(repo), "data/ds", "-o", str(tmp / label / "got"), cwd=tmp
    )
    out["bytes"] = sum(p.stat().st_size for p in (tmp / label / "got").rglob("*") if p.is_file())
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=200_000)
    p.add_argument("--shard-size", type=int, default=2500)
    p.add_argument("--dir", default=str(REPO), help="where to work (default: the repository)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        tmp = Path(tmp)
        forms = ("imagefolder", "webdataset", "webdataset+gzip")
        results = {form: measure(form, tmp, tmp / "model", args.images, args.shard_size) for form in forms}
    a, b, c = (results[f] for f in forms)
    print(f"\n{args.images} images of 28x28, shards of {args.shard_size}; seconds (2 CPU cores)\n")
    print("| step | ImageFolder | WebDataset .tar | ratio | WebDataset .tar.gz | ratio |")
    print("| --- | --- | --- | --- | --- | --- |")
    for step in ("files", "bytes", "write", "dvc add", "dvc push", "dvc get", "push + get"):
        x, y, z = (r[step] if step != "push + get" else r["dvc push"] + r["dvc get"] for r in (a, b, c))
        fmt = "{:,.0f}" if step in ("files", "bytes") else "{:.1f}"
        print(f"| {step} | {fmt.format(x)} | {fmt.format(y)} | {x / y:.2f}x | {fmt.format(z)} | {x / z:.2f}x |")


if __name__ == "__main__":
    main()
