"""Stage ``report``: one human-readable markdown report of the run, with its pictures beside it.

``<paths.report>/report.md`` holds the metrics table of every generator, the gate's verdict and checks,
what was published (or why nothing was) with the published dataset card, and per generator the sample
grid, the training-loss curve and the evaluation charts (copied next to the report, so the folder is
self-contained and renders on any markdown viewer). Nothing in it depends on the clock: the same inputs
give the same bytes.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd

from synthdata import locks, plots
from synthdata.checkpoint import LOSSES
from synthdata.fsutil import atomic_dir
from synthdata.manifest import DATASET, candidates, read_manifest
from synthdata.metrics import registry
from synthdata.params import Params

CHARTS = ("samples.png", "per_class_fid.png", "accuracy.png", "confusion.png")


def _num(v, digits: int = 3) -> str:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return f"{v:.{digits}f}"
    return "n/a" if v is None else str(v)


def metrics_table(rows: list[dict]) -> str:
    """Markdown table of every candidate's headline scores and gate verdict (also the Prefect artifact): one
    column per registered metric column shown in reports, a value ± its std where it has one."""
    cols = [c for c in registry.columns() if c.report]
    head = "| generator | gate | " + " | ".join(c.header for c in cols) + " |"
    lines = [head, "|" + " --- |" * (len(cols) + 2)]
    for r in rows:
        s = r["scores"]
        verdict = "passed" if r["passed"] else "FAILED: " + "; ".join(r["failed_checks"])
        cells = [_num(s.get(c.key), c.digits) + (f" ± {_num(s.get(c.std), c.digits)}" if c.std else "") for c in cols]
        lines.append(f"| {r['generator']} | {verdict} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def published_summary(manifest: dict) -> str:
    if not manifest["published"]:
        return f"**Nothing published.** {manifest['reason']}."
    return (
        f"**Published: `{manifest['generator']}`** ({manifest['reason']}): {manifest['images']} images "
        f"({manifest['real_images']} real, {manifest['synthetic_images']} synthetic), dataset id "
        f"`{manifest['dataset_id'][:16]}`."
    )


def run(params: Params) -> dict:
    p = params.paths
    reads = [p.published] + [Path(folder) / g for g in params.generators for folder in (p.evaluation, p.models)]
    with locks.hold(writes=[p.report], reads=reads):
        return _run(params)


def _run(params: Params) -> dict:
    rows = candidates(params)
    manifest = read_manifest(params)
    published = Path(params.paths.published)
    parts = [
        f"# synthdata report: {params.publish.name}",
        "",
        f"Data source `{params.data.source}`; generators {', '.join(params.generators)}; "
        f"features `{rows[0]['scores']['feature_extractor']}`.",
        "",
        "## Verdict",
        "",
        published_summary(manifest),
        "",
        "## Metrics (real test split)",
        "",
        metrics_table(rows),
        "",
        "fid: FID of the synthetic images against the real test split; floor: FID of as many real train "
        "images against the same split; acc: real-test accuracy (mean ± std over seeds) of one classifier "
        "trained on real, synthetic or real + synthetic data.",
        "",
    ]
    with atomic_dir(params.paths.report) as tmp:
        for r in rows:
            parts += _generator_section(params, r, tmp)
        card = published / DATASET / "README.md"
        if manifest["published"] and card.exists():
            body = "\n".join("#" + line if line.startswith("#") else line for line in card.read_text().splitlines())
            parts += ["## Dataset card of the published dataset", "", body, ""]
        (tmp / "report.md").write_text("\n".join(parts))
    return {"report": str(Path(params.paths.report) / "report.md"), "published": manifest["published"]}


def _generator_section(params: Params, r: dict, tmp: Path) -> list[str]:
    """One generator's gate checks, per-class spread, filter acceptance and charts (copied into ``tmp``)."""
    name, s = r["generator"], r["scores"]
    parts = [f"## {name}", ""]
    for c in json.loads((Path(params.paths.evaluation) / name / "gate.json").read_text())["checks"]:
        mark = "passed" if c["passed"] else "FAILED"
        parts.append(f"- gate {c['check']}: {c['value']:.3f} {c['op']} {c['limit']} ({c['detail']}): {mark}")
    if s.get("class_fid_max_over_median") is not None:
        parts.append(
            f"- per-class FID: worst class / median class = {s['class_fid_max_over_median']:.2f}"
            + (
                f" (relative to each class's real-vs-real floor: {s['class_fid_ratio_max_over_median']:.2f})"
                if s.get("class_fid_ratio_max_over_median") is not None
                else ""
            )
        )
    if s.get("filter_acceptance") is not None:
        table = pd.read_csv(Path(params.paths.evaluation) / name / "per_class.csv")
        per = ", ".join(f"{c} {a:.0%}" for c, a in zip(table["class"], table["acceptance_rate"]))
        parts.append(f"- classifier filter: kept {s['filter_acceptance']:.1%} of candidates ({per})")
    parts.append("")
    losses = Path(params.paths.models) / name / LOSSES
    if losses.exists():
        plots.line_chart(pd.read_csv(losses), "step", tmp / f"{name}_losses.png", f"{name}: training losses")
        parts += [f"![{name} training losses]({name}_losses.png)", ""]
    for chart in CHARTS:
        src = Path(params.paths.evaluation) / name / chart
        if src.exists():
            shutil.copy2(src, tmp / f"{name}_{chart}")
            parts += [f"![{name} {chart[:-4]}]({name}_{chart})", ""]
    return parts
