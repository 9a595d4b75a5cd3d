"""Benchmark for the reliability work (issue 17). Prints a table:

- peak memory of ``synthdata sample`` as the count grows (the main process and its largest writer), and in
  the first seconds of a 10-million-per-class run (also with another checkout's code: ``--tree``);
- what generating in fixed micro-batches of 64 costs against one batch per call (the old path);
- how fast a hostile params file (an alias bomb) and an oversized image are refused.

    python benchmarks/bench_hostile.py [--counts 20,2000,20000] [--tree OTHER_CHECKOUT]

Runs in a temporary folder on the embedded digits with a tiny cGAN (prepare and train take seconds).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

WRAP = """
import json, resource, sys
from pathlib import Path
from synthdata import cli
code = cli.main(sys.argv[1:])
hwm = next(int(l.split()[1]) for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("VmHWM:"))
print(json.dumps({"code": code, "main_mb": hwm / 1024,
                  "worker_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}), file=sys.stderr)
"""


def _cli(*args: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", WRAP, *args], cwd=REPO, capture_output=True, text=True)
    out = json.loads(proc.stderr.strip().splitlines()[-1])
    assert out["code"] == 0, proc.stderr
    return out


def memory(tmp: Path, counts: list[int]) -> list[tuple]:
    import yaml

    from tests.conftest import write_params

    params = write_params(tmp, generators=["cgan"], sample={"seed": 0, "per_class": 20, "batch_size": 500})
    _cli("prepare", "--params", str(params))
    _cli("train", "--params", str(params))
    rows = []
    for n in counts:
        raw = yaml.safe_load(params.read_text())
        raw["sample"]["per_class"] = n
        p = tmp / f"p{n}.yaml"
        p.write_text(yaml.safe_dump(raw))
        t0 = time.perf_counter()
        out = _cli("sample", "--params", str(p))
        seconds = time.perf_counter() - t0
        rows.append(
            (
                f"synthdata sample, {n:,} per class ({10 * n:,} images)",
                f"{seconds:.1f} s",
                f"main {out['main_mb']:.0f} MB, largest worker {out['worker_mb']:.0f} MB",
            )
        )
    return rows


EARLY = """
import sys
from synthdata import cli, sample
if hasattr(sample, "check_space"):  # 10 million per class needs 400 GB: measure memory, not the refusal
    sample.check_space = lambda *args: None
sys.exit(cli.main(sys.argv[1:]))
"""


def early(tmp: Path, tree: Path, per_class: int = 10_000_000, seconds: float = 25) -> tuple:
    """Peak RSS of the main process in the first ``seconds`` of a huge sample (then killed), with the code
    of ``tree`` (this checkout, or e.g. a ``git worktree`` of an older commit)."""
    import os
    import signal

    import yaml

    from tests.conftest import write_params

    work = tmp / f"early-{tree.name}"
    work.mkdir()
    params = write_params(work, generators=["cgan"], sample={"seed": 0, "per_class": 20, "batch_size": 500})
    env = {**os.environ, "PYTHONPATH": str(tree)}
    for stage in ("prepare", "train"):
        subprocess.run(
            [sys.executable, "-m", "synthdata", stage, "--params", str(params)],
            cwd=tree,
            env=env,
            check=True,
            capture_output=True,
        )
    raw = yaml.safe_load(params.read_text())
    raw["sample"]["per_class"] = per_class
    params.write_text(yaml.safe_dump(raw))
    proc = subprocess.Popen(
        [sys.executable, "-c", EARLY, "sample", "--params", str(params)],
        cwd=tree,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    peak, t0 = 0, time.monotonic()
    while time.monotonic() - t0 < seconds and proc.poll() is None:
        status = Path(f"/proc/{proc.pid}/status").read_text()
        peak = max(peak, next(int(x.split()[1]) for x in status.splitlines() if x.startswith("VmHWM:")))
        time.sleep(0.2)
    written = sum(1 for _ in (work / "data/synthetic").glob(".cgan.tmp-*/*/*.png"))
    os.killpg(proc.pid, signal.SIGKILL)  # the whole group: older code left its writers running
    proc.wait()
    return (
        f"first {seconds:.0f} s of a {per_class:,}-per-class sample ({tree.name})",
        f"{written:,} images written",
        f"main {peak / 1024:.0f} MB",
    )


def micro_batches(rounds: int = 3) -> list[tuple]:
    """img/s of generate_from_seeds (fixed batches of 64) against one call per 500 (the old path), 1 thread,
    interleaved, default-width cGAN and cVAE at 8x8 and 28x28 (random weights: the cost does not depend on them)."""
    import torch

    from synthdata.generators import get

    torch.set_num_threads(1)
    rows = []
    for name in ("cgan", "cvae"):
        for size in (8, 28):
            cls = get(name)
            torch.manual_seed(0)
            g = cls(cls.Config(), (1, size, size), 10).eval()
            n = 2000
            labels, seeds = torch.arange(n) % 10, torch.arange(n, dtype=torch.int64)
            fixed, whole = [], []
            for _ in range(rounds):
                t0 = time.perf_counter()
                g.generate_from_seeds(labels, seeds)
                fixed.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                for lo in range(0, n, 500):
                    g._generate_batch(labels[lo : lo + 500], seeds[lo : lo + 500])
                whole.append(time.perf_counter() - t0)
            f, w = sorted(fixed)[rounds // 2], sorted(whole)[rounds // 2]
            rows.append(
                (
                    f"generate {name} {size}x{size}: batches of 64 vs 500 (1 thread)",
                    f"{n / f:,.0f} vs {n / w:,.0f} img/s",
                    f"{w / f:.0%} of the old rate",
                )
            )
    return rows


def refusals(tmp: Path) -> list[tuple]:
    import numpy as np
    from PIL import Image

    from synthdata.errors import SynthdataError
    from synthdata.params import DataParams, load_params
    from synthdata.sources import load

    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    bomb = tmp / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\nsample:\n  per_class: *a8\n")
    t0 = time.perf_counter()
    try:
        load_params(bomb)
    except SynthdataError as exc:
        msg = str(exc)
    rows = [
        (
            "params file with an alias bomb (9**9 values)",
            f"{(time.perf_counter() - t0) * 1e3:.0f} ms",
            f"refused, message {len(msg)} characters",
        )
    ]
    root = tmp / "folder"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.zeros((8, 8), np.uint8) + i).save(root / c / f"{i}.png")
    Image.new("L", (4100, 4100)).save(root / "a" / "big.png")  # 16.8 megapixels, just over the limit
    t0 = time.perf_counter()
    try:
        load(DataParams(source="image-folder", path=str(root)))
    except SynthdataError as exc:
        msg = str(exc)
    rows.append(
        (
            "image folder with one 4100x4100 PNG",
            f"{(time.perf_counter() - t0) * 1e3:.0f} ms",
            "refused before decoding" if "limit" in msg else msg,
        )
    )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--counts", default="20,2000,20000", help="sample.per_class values, comma-separated")
    ap.add_argument(
        "--tree",
        action="append",
        type=Path,
        default=[],
        help="also measure the first seconds of a huge sample with the code of this checkout "
        "(repeatable; e.g. a git worktree of an older commit)",
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        rows = memory(tmp, [int(c) for c in args.counts.split(",")])
        rows += [early(tmp, tree.resolve()) for tree in (REPO, *args.tree)]
        rows += micro_batches() + refusals(tmp)
    print("| measurement | time / rate | result |\n| --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
