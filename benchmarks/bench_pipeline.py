"""Time the pipeline as users run it, in a fresh clone of this repository's HEAD, and print one table.

1. ``dvc repro`` of the default pipeline from a fresh clone (target <= 10 min on 2 CPU cores);
2. a no-op ``dvc repro`` (target < 5 s);
3. the Prefect flow (``python -m flows.pipeline --no-release``, ephemeral API) against ``dvc repro``,
   side by side: both with nothing to do, and both after the same kind of change (a new ``sample.seed``,
   which re-runs sample, evaluate, publish and report); target: the flow adds <= 30 s;
4. ``synthdata release`` (push to the default local DVC remote, commit, tag).

Usage: python benchmarks/bench_pipeline.py [--keep]   (run from the repository, its venv active)
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ENV = {
    **os.environ,
    "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@synthdata.invalid",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@synthdata.invalid",
}


def timed(argv: list[str], cwd: Path, env: dict | None = None) -> float:
    t = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env=env or ENV, capture_output=True, text=True)
    seconds = time.perf_counter() - t
    if proc.returncode:
        sys.exit(f"{' '.join(argv)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return seconds


def set_seed(root: Path, seed: int) -> None:
    text = (root / "params.yaml").read_text()
    head, sep, tail = text.partition("\nsample:\n")
    first, nl, rest = tail.partition("\n")
    assert first.strip().startswith("seed:"), first
    (root / "params.yaml").write_text(f"{head}{sep}  seed: {seed}{nl}{rest}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--keep", action="store_true", help="keep the clone (path printed)")
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    root = tmp / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(root)], check=True)
    dvc = [sys.executable, "-m", "dvc"]
    flow = [sys.executable, "-m", "flows.pipeline", "--no-release"]
    flow_env = {**ENV, "PREFECT_HOME": str(tmp / "prefect-home"), "PREFECT_API_URL": ""}
    rows = []
    try:
        full = timed([*dvc, "repro"], root)
        rows.append(("dvc repro, fresh clone, default pipeline", full, "<= 600 s"))
        noop = [timed([*dvc, "repro"], root) for _ in range(3)]
        rows.append(("dvc repro, nothing to do (median of 3)", statistics.median(noop), "< 5 s"))
        flow_noop = [timed(flow, root, flow_env) for _ in range(2)]
        rows.append(
            (
                "flow run, nothing to do (median of 2)",
                statistics.median(flow_noop),
                f"+{statistics.median(flow_noop) - statistics.median(noop):.1f} s over dvc repro (<= 30 s)",
            )
        )
        set_seed(root, 1)
        changed = timed([*dvc, "repro"], root)
        rows.append(("dvc repro after sample.seed change", changed, "-"))
        set_seed(root, 2)
        flow_changed = timed(flow, root, flow_env)
        rows.append(
            (
                "flow run after sample.seed change",
                flow_changed,
                f"+{flow_changed - changed:.1f} s over dvc repro (<= 30 s)",
            )
        )
        for argv in (["git", "add", "dvc.lock", "params.yaml"], ["git", "commit", "-q", "-m", "bench"]):
            subprocess.run(argv, cwd=root, check=True, env=ENV)
        release = timed([sys.executable, "-m", "synthdata", "release"], root)
        rows.append(("synthdata release (dvc push of every output to the local remote, commit, tag)", release, "-"))
    finally:
        if args.keep:
            print(f"clone kept at {root}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print("\n| measurement | time | target / overhead |\n| --- | --- | --- |")
    for name, seconds, target in rows:
        print(f"| {name} | {seconds:.1f} s | {target} |")


if __name__ == "__main__":
    main()
