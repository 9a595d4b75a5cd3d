"""Stage ``publish``: stage the one gated augmented dataset that other teams may get.

Reads every generator's ``gate.json`` and ``metrics.json`` from ``evaluate``; picks the generator named by
``publish.generator`` (or, for ``auto``, the passing one with the best ``acc_synthetic``, ties broken by the
lower ``fid_ratio``); hard-links (or, across file systems, copies) its augmented dataset (real train split +
synthetic images) to ``<paths.published>/dataset`` with a dataset card that carries its scores and
provenance, and writes ``<paths.published>/manifest.json``. A generator that failed the gate is never
copied: when none passed, the manifest says ``"published": false`` and why, and ``synthdata release``
refuses to release it.

The folder is built aside and renamed into place, so it is either the old one or the new one, never half.
Making it a version other teams can ``dvc get`` is ``synthdata release`` (push, commit, tag), which must
run after ``dvc repro`` because DVC writes ``dvc.lock`` only after a stage finishes.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

from synthdata import locks
from synthdata.dataset import dataset_card, read_metadata, stored_files
from synthdata.errors import SynthdataError
from synthdata.fsutil import atomic_dir, link_tree, sha256_file, write_json
from synthdata.manifest import DATASET, MANIFEST, candidates
from synthdata.metrics.registry import score_keys
from synthdata.params import Params


def choose(params: Params, rows: list[dict]) -> tuple[dict | None, str]:
    """The candidate to publish and a sentence saying why (or why none)."""
    if params.publish.generator != "auto":
        row = next(r for r in rows if r["generator"] == params.publish.generator)
        if not row["passed"]:
            return None, f"{row['generator']} (publish.generator) failed the gate: {'; '.join(row['failed_checks'])}"
        return row, f"{row['generator']} is publish.generator and passed the gate"
    passed = [r for r in rows if r["passed"]]
    if not passed:
        why = " | ".join(f"{r['generator']}: {'; '.join(r['failed_checks'])}" for r in rows)
        return None, f"no generator passed the gate ({why})"
    best = max(passed, key=lambda r: (r["scores"]["acc_synthetic"] or 0.0, -(r["scores"]["fid_ratio"] or 0.0)))
    return best, (
        f"{best['generator']} has the best acc_synthetic of the {len(passed)} generator(s) that passed the gate"
    )


def dataset_id(root: Path) -> str:
    """Content hash of a dataset folder: every file's relative path and sha256, in sorted order."""
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(f"{path.relative_to(root).as_posix()}\t{sha256_file(path)}\n".encode())
    return h.hexdigest()


def _card(params: Params, row: dict, meta, class_names: list[str], reason: str) -> str:
    s = row["scores"]
    real = meta[meta["source"] == "real"]
    syn = meta[meta["source"] == "synthetic"]
    counts = meta["label"].value_counts().to_dict()
    prepared_card = Path(params.paths.prepared) / "train" / "README.md"
    origin = prepared_card.read_text().splitlines()[0].lstrip("# ") if prepared_card.exists() else "real data"
    fmt = lambda v: "n/a" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v))  # noqa: E731
    summary = (
        f"Published by synthdata: {len(real)} real training images ({origin}) and {len(syn)} synthetic images "
        f"from the `{row['generator']}` generator, which passed the quality gate ({reason}).\n\n"
        "## Scores (from `synthdata evaluate`, on the real test split)\n\n"
        "| metric | value |\n| --- | --- |\n"
        + "\n".join(f"| {k} | {fmt(s[k])} |" for k in score_keys())
        + f"\n\nGate: fid / fid_floor <= {params.gate.max_fid_ratio} and acc_synthetic / acc_real >= "
        f"{params.gate.min_acc_ratio}."
    )
    provenance = [
        f"generator: {row['generator']}",
        f"checkpoint sha256: {', '.join(row['checkpoint_sha256'])}",
        "every synthetic row of `metadata.parquet` names its checkpoint and latent seed: "
        "`synthdata.load_generator(...).generate([label_id], seed)` remakes it bit for bit",
        f"real images: {params.paths.prepared}/train ({origin})",
    ]
    lic = "Synthetic images made by a generator trained on the real data: same license as the real data."
    title = f"{params.publish.name}: augmented dataset"
    return dataset_card(title, summary, counts, class_names, provenance, lic, params.sample.format)


def run(params: Params) -> dict:
    p = params.paths
    reads = [p.prepared] + [Path(folder) / g for g in params.generators for folder in (p.evaluation, p.augmented)]
    with locks.hold(writes=[p.published], reads=reads):
        return _run(params)


def _run(params: Params) -> dict:
    rows = candidates(params)
    row, reason = choose(params, rows)
    out = Path(params.paths.published)
    manifest = {"name": params.publish.name, "published": row is not None, "reason": reason, "candidates": rows}
    with atomic_dir(out) as tmp:
        if row is not None:
            src = Path(params.paths.augmented) / row["generator"]
            meta, class_names = read_metadata(src)
            missing = [f for f in stored_files(meta) if not (src / f).is_file()]
            if missing:
                raise SynthdataError(
                    f"{src}: {len(missing)} file(s) listed in metadata.parquet are missing "
                    f"(first: {missing[0]}); run 'synthdata sample' again"
                )
            dst = tmp / DATASET
            link_tree(src, dst)  # 111,000 files on MNIST: links, not copies (stages replace folders whole)
            card = dst / "README.md"
            card.unlink(missing_ok=True)  # a link to the augmented dataset's card: replace it, never write into it
            card.write_text(_card(params, row, meta, class_names, reason))
            manifest.update(
                {
                    "generator": row["generator"],
                    "dataset": DATASET,
                    "dataset_id": dataset_id(dst),
                    "images": len(meta),
                    "real_images": int((meta["source"] == "real").sum()),
                    "synthetic_images": int((meta["source"] == "synthetic").sum()),
                    "classes": class_names,
                    "scores": row["scores"],
                    "checkpoint_sha256": row["checkpoint_sha256"],
                }
            )
        write_json(tmp / MANIFEST, manifest)
    if row is None:
        print(f"synthdata publish: warning: nothing published: {reason}", file=sys.stderr)
    return {k: manifest.get(k) for k in ("published", "generator", "dataset_id", "images", "reason")}
