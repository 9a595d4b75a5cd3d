"""Generator quality on real MNIST, measured by the pipeline's own stages, and one table of the targets.

For each protocol, a fresh clone of this repository's HEAD gets the protocol's params profile as its
``params.yaml`` and runs ``dvc repro`` (the real pipeline: prepare, filter, reference, train, sample,
evaluate, publish, report); the table reads ``data/evaluation/<generator>/metrics.json``.

- ``full``: ``params-mnist.yaml``: all 60,000 MNIST train images (51,000 train + 9,000 val), 6,000 synthetic
  images per class. Targets: acc_real - acc_synthetic <= 0.5 points; acc_augmented >= acc_real - 0.1.
- ``low``: ``params-mnist-600.yaml``: 60 real train images per class; real-only baseline with shifts and
  rotations. Target: acc_augmented - acc_real >= 3 points.
- both: every class's FID <= 2x the median class's.

Accuracies are the mean (and std) over ``evaluate.seeds`` classifier seeds on the 10,000 MNIST test images.

Usage: python benchmarks/bench_mnist.py [--protocol full low] [--mnist DIR] [--set KEY=VALUE ...] [--keep]
       [--json results.json] [--reuse DIR]

``--reuse DIR`` re-runs the clones kept by an earlier ``--keep`` run (``DIR/<protocol>``): each is moved to
HEAD's code and profile with its ``dvc.lock`` kept, so ``dvc repro`` re-runs only the stages whose code or
params changed (e.g. a new evaluation budget without retraining the generators). Stages it does not re-run
keep the seconds of the run that made them (``stage_seconds.json`` in the clone), so the pipeline total
stays that of a run from scratch.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
PROFILES = {"full": "params-mnist.yaml", "low": "params-mnist-600.yaml"}
ENV = {
    **os.environ,
    "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
    "PYTHONUNBUFFERED": "1",
}


def configure(root: Path, profile: str, mnist: Path, overrides: list[str]) -> dict:
    params = yaml.safe_load((REPO / profile).read_text())
    params["data"]["path"] = str(mnist)
    for item in overrides:
        key, _, value = item.partition("=")
        node = params
        *parents, leaf = key.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = yaml.safe_load(value)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return params


def update(root: Path) -> None:
    """Move a kept clone to this repository's HEAD, keeping its ``dvc.lock`` (what its outputs were made from)."""
    lock = (root / "dvc.lock").read_bytes()
    for cmd in (["git", "fetch", "-q", str(REPO), "HEAD"], ["git", "checkout", "-q", "-f", "FETCH_HEAD"]):
        subprocess.run(cmd, cwd=root, check=True)
    (root / "dvc.lock").write_bytes(lock)


def repro(root: Path, log: Path) -> dict[str, float]:
    """Run ``dvc repro``, echo its output to ``log``; return seconds per stage."""
    times: dict[str, float] = {}
    stage, t = None, time.perf_counter()
    with open(log, "w") as out:
        # --keep-going: a generator that fails (e.g. its filter cannot fill a class) does not stop the others
        proc = subprocess.Popen(
            [sys.executable, "-m", "dvc", "repro", "--keep-going"],
            cwd=root,
            env=ENV,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            out.write(line)
            out.flush()
            if m := re.match(r"Running stage '([^']+)'", line):
                now = time.perf_counter()
                if stage:
                    times[stage] = now - t
                stage, t = m.group(1), now
        if proc.wait():
            print(f"dvc repro failed in part in {root}; see {log}", flush=True)
    if stage:
        times[stage] = time.perf_counter() - t
    return times


def pp(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}"


def rows_for(protocol: str, root: Path, params: dict, times: dict[str, float]) -> list[dict]:
    out = []
    for name in params["generators"]:
        path = root / params["paths"]["evaluation"] / name / "metrics.json"
        if not path.is_file():
            print(f"{protocol} {name}: no metrics (its stages failed; see the log)")
            continue
        m = json.loads(path.read_text())
        seconds = sum(v for k, v in times.items() if k.endswith(f"@{name}")) + times.get("filter", 0.0)
        out.append(
            {
                "protocol": protocol,
                "generator": name,
                **m,
                "stage_seconds": seconds,
                "train_seconds": times.get(f"train@{name}"),
                "pipeline_seconds": sum(times.values()),
            }
        )
    return out


def verdicts(r: dict) -> list[str]:
    acc = r["acc_real"], r["acc_synthetic"], r["acc_augmented"]
    worst = r.get("class_fid_max_over_median")
    checks = [
        f"classes: worst FID / median {worst:.2f} {'OK' if worst is not None and worst <= 2 else 'MISSED'} (<= 2)"
        if worst is not None
        else "classes: -"
    ]
    if r["protocol"] == "full":
        gap, harm = acc[0] - acc[1], acc[2] - acc[0]
        checks += [
            f"gap {100 * gap:.2f} pts {'OK' if gap <= 0.005 else 'MISSED'} (<= 0.5)",
            f"augmented - real {100 * harm:+.2f} pts {'OK' if harm >= -0.001 else 'MISSED'} (>= -0.1)",
        ]
    else:
        gain = acc[2] - acc[0]
        checks.append(f"gain {100 * gain:+.2f} pts {'OK' if gain >= 0.03 else 'MISSED'} (>= +3)")
    return checks


def table(rows: list[dict]) -> str:
    head = (
        "| protocol | generator | acc real % | acc synthetic % | acc real+synth % | FID (domain) | floor | "
        "P / R / D / C | worst class / median: FID (FID/floor) | filter acceptance | train s | pipeline s |"
    )
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    for r in rows:
        lines.append(
            f"| {r['protocol']} | {r['generator']} | {pp(r['acc_real'])} ± {pp(r['acc_real_std'])} | "
            f"{pp(r['acc_synthetic'])} ± {pp(r['acc_synthetic_std'])} | {pp(r['acc_augmented'])} ± "
            f"{pp(r['acc_augmented_std'])} | {r['fid']:.2f} | {r['fid_floor']:.2f} | {r['precision']:.2f} / "
            f"{r['recall']:.2f} / {r['density']:.2f} / {r['coverage']:.2f} | "
            f"{r['class_fid_max_over_median'] or float('nan'):.2f} "
            f"({r.get('class_fid_ratio_max_over_median') or float('nan'):.2f}) | "
            f"{'-' if r['filter_acceptance'] is None else format(r['filter_acceptance'], '.1%')} | "
            f"{r['train_seconds'] or 0:.0f} | {r['pipeline_seconds']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--protocol", nargs="+", choices=sorted(PROFILES), default=["full", "low"])
    p.add_argument(
        "--mnist",
        type=Path,
        default=REPO.parent / "shared" / "datasets" / "mnist",
        help="folder of the MNIST IDX files (default: ../shared/datasets/mnist)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a profile key in every protocol (e.g. for a quick smoke run)",
    )
    p.add_argument("--keep", action="store_true", help="keep the clones (paths printed)")
    p.add_argument("--json", type=Path, help="also write the rows as JSON here")
    p.add_argument(
        "--reuse",
        type=Path,
        metavar="DIR",
        help="re-run the clones an earlier --keep run left in DIR (only changed stages re-run)",
    )
    args = p.parse_args()
    if not args.mnist.is_dir():
        sys.exit(f"bench_mnist: {args.mnist}: no MNIST folder; pass --mnist DIR")
    for protocol in args.protocol if args.reuse else ():
        if not (args.reuse / protocol / "dvc.lock").is_file():
            sys.exit(f"bench_mnist: {args.reuse / protocol}: no kept clone with a dvc.lock; run with --keep first")
    tmp = args.reuse or Path(tempfile.mkdtemp(prefix="bench-mnist-"))
    rows = []
    try:
        for protocol in args.protocol:
            root = tmp / protocol
            if args.reuse:
                update(root)
            else:
                subprocess.run(["git", "clone", "-q", str(REPO), str(root)], check=True)
            params = configure(root, PROFILES[protocol], args.mnist.resolve(), args.set)
            log = tmp / f"{protocol}.log"
            print(f"{protocol}: dvc repro in {root} (log {log})", flush=True)
            seconds = root / "stage_seconds.json"
            times = json.loads(seconds.read_text()) if seconds.is_file() else {}
            times = {k: v for k, v in times.items() if k.split("@")[-1] in params["generators"] or "@" not in k}
            times.update(repro(root, log))
            seconds.write_text(json.dumps(times, indent=1))
            rows += rows_for(protocol, root, params, times)
            print(
                json.dumps({"protocol": protocol, "stage_seconds": {k: round(v, 1) for k, v in times.items()}}),
                flush=True,
            )
    finally:
        if args.keep or args.reuse:
            print(f"clones kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    print(f"\nMNIST, {os.cpu_count()} CPU cores, torch threads = cores; overrides: {args.set or 'none'}\n")
    print(table(rows))
    print()
    for r in rows:
        print(f"{r['protocol']:>4} {r['generator']}: " + "; ".join(verdicts(r)))


if __name__ == "__main__":
    main()
