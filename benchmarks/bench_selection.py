"""Which val criterion predicts the test result? Checkpoint selection measured on a params profile.

For each generator and training seed: one training run per criterion with ``train.select_every`` scoring on the
real val split (training is deterministic, so every run has the same trajectory; each keeps its criterion's best
snapshot), then the pipeline's own ``sample`` and ``evaluate`` on the candidates: the last step and the best by
each criterion (``val_fid_ratio``, ``val_class_fid_ratio_max``, ``val_tstr_error``). Prints one table (steps,
val scores, real-test accuracy of a classifier trained on each candidate's synthetic data) and, over all
candidates, the Spearman correlation of each criterion with the test accuracy (more negative = better predictor:
lower val scores should mean higher accuracy).

    python benchmarks/bench_selection.py [--params params.yaml] [--generators cgan cvae] [--seeds 0 1 2]
        [--select-every 100] [--criteria ...] [--dir WORKDIR] [--set KEY=VALUE ...]

``--criteria val_tstr_error`` trains once per generator and seed (a ``val_tstr_error`` run records all three
criteria's curves, but keeps only its own best snapshot): the candidates are then the last step and that one.

The work folder (default: a temporary one) gets ``prepare``, ``reference`` (and ``filter`` when the profile
filters) once; nothing in the repository's ``data/`` is touched.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from synthdata import checkpoint, evaluate, prepare, reference, sample, train  # noqa: E402
from synthdata import filter as filter_stage  # noqa: E402
from synthdata.params import load_params  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CRITERIA = ("val_fid_ratio", "val_class_fid_ratio_max", "val_tstr_error")


def _params(work: Path, base: str, overrides: dict):
    raw = yaml.safe_load((REPO / base).read_text())
    raw["paths"] = {k: str(work / "data" / k) for k in raw["paths"]}
    path = work / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return load_params(path, overrides)


def _score(params, gen: str, ckpt: Path, tag: str) -> dict:
    """sample + evaluate of one candidate checkpoint, into folders of its own."""
    paths = {k: str(Path(getattr(params.paths, k)) / tag) for k in ("synthetic", "augmented", "evaluation")}
    p = params.model_copy(update={"paths": params.paths.model_copy(update=paths)})
    sample.run(p, gen, checkpoint=ckpt, progress=False)
    evaluate.run(p, gen)
    return json.loads((Path(p.paths.evaluation) / gen / "metrics.json").read_text())


def _spearman(x: list[float], y: list[float]) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(x, y).statistic) if len(x) > 2 else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--generators", nargs="+", default=["cgan", "cvae"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--select-every", type=int, default=100)
    ap.add_argument("--criteria", nargs="+", choices=CRITERIA, default=list(CRITERIA))
    ap.add_argument("--dir", default=None)
    ap.add_argument("--set", nargs="*", default=[], help="KEY=VALUE overrides of the profile")
    args = ap.parse_args()
    over = {k: yaml.safe_load(v) for k, _, v in (s.partition("=") for s in args.set)}
    work = Path(args.dir or tempfile.mkdtemp(prefix="bench-selection-"))
    work.mkdir(parents=True, exist_ok=True)
    base = _params(work, args.params, over)
    if not (Path(base.paths.reference) / "domain.pt").is_file():
        prepare.run(base)
        reference.run(base)
    if base.filter.enabled and not any(Path(base.paths.filter).glob("*")):
        filter_stage.run(base)
    rows, points = [], []
    for gen in args.generators:
        for seed in args.seeds:
            t = time.perf_counter()
            found = {}
            for metric in args.criteria:
                o = {**over, "train.seed": seed, "train.select_every": args.select_every, "train.select_metric": metric}
                o["train.seeds"] = []
                o["paths.models"] = str(work / "data" / f"models-{metric}-{seed}")
                p = _params(work, args.params, o)
                train.run(p, gen, progress=False)
                out = Path(p.paths.models) / gen
                found[metric] = (p, out, json.loads((out / "summary.json").read_text()))
            seconds = time.perf_counter() - t
            p, out, summary = found[args.criteria[0]]
            curve: dict[int, dict] = {}
            for _, o, _ in found.values():  # the tstr run's curve adds its column to the same steps
                with open(o / checkpoint.SELECTION, newline="") as f:
                    for r in csv.DictReader(f):
                        curve.setdefault(int(r["step"]), {}).update(r)
            last = max(curve)
            candidates = {"last": (last, out / checkpoint.FILE)}
            for metric, (_, o, s) in found.items():
                candidates[metric] = (s["selected_step"], o / checkpoint.SELECTED)
            scored: dict[int, dict] = {}  # candidates at the same step are the same snapshot: scored once
            for label, (step, ckpt) in candidates.items():
                m = scored.get(step) or _score(p, gen, ckpt, f"{gen}-{seed}-{label}")
                scored[step] = m
                vals = {c: float(curve[step].get(c) or "nan") for c in CRITERIA}
                rows.append({"generator": gen, "seed": seed, "candidate": label, "step": step, **vals, **m})
                points.append((gen, vals, m["acc_synthetic"]))
                print(
                    f"{gen} seed {seed} {label:>24}: step {step:>5}  "
                    + "  ".join(f"{c} {vals[c]:.3f}" for c in CRITERIA)
                    + f"  acc_synthetic {m['acc_synthetic']:.4f}  acc_augmented {m['acc_augmented']:.4f}"
                    + f"  (trainings {seconds:.0f} s)",
                    flush=True,
                )
    print(f"\nprofile {args.params} {' '.join(args.set)}, select_every {args.select_every}\n")
    print("| generator | seed | candidate | step | " + " | ".join(CRITERIA) + " | acc synthetic | acc real+syn |")
    print("| --- " * (6 + len(CRITERIA)) + "|")
    for r in rows:
        cells = " | ".join(f"{r[c]:.3f}" for c in CRITERIA)
        print(
            f"| {r['generator']} | {r['seed']} | {r['candidate']} | {r['step']} | {cells} | "
            f"{r['acc_synthetic']:.4f} | {r['acc_augmented']:.4f} |"
        )
    print("\n| criterion | Spearman with test acc_synthetic (all candidates) | per generator |")
    print("| --- | --- | --- |")
    for c in CRITERIA:
        per = {
            g: _spearman([v[c] for gg, v, _ in points if gg == g], [a for gg, _, a in points if gg == g])
            for g in args.generators
        }
        total = _spearman([v[c] for _, v, _ in points], [a for _, _, a in points])
        print(f"| {c} | {total:.2f} | " + ", ".join(f"{g} {x:.2f}" for g, x in per.items()) + " |")
    (work / "selection.json").write_text(json.dumps(rows, indent=1, default=str))


if __name__ == "__main__":
    main()
