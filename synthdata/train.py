"""Stage ``train``: fit one registered generator on the prepared train split.

The loop is :class:`synthdata.trainer.Trainer` (seeded batches, the generator's own ``training_step``, the
EMA update); its hooks here write the loss table (``losses.csv``, plotted by DVC) and checkpoints. The run
lives in ``<models>/<name>.partial`` until it finishes and then replaces ``<models>/<name>`` whole. Resume
restores everything (weights, EMA weights, optimizer states, step, RNG state): the resumed run is bit-identical
to an uninterrupted one on the CPU.
"""

from __future__ import annotations

import csv
import os
import shutil
import time
from pathlib import Path
from typing import Callable

import torch
from tqdm import tqdm

from synthdata import checkpoint, generators, locks
from synthdata.checkpoint import LOSSES
from synthdata.dataset import load_dataset
from synthdata.fsutil import atomic_dir, replace_dir, sha256_file, write_json
from synthdata.params import Params, resolved
from synthdata.runtime import setup_device
from synthdata.seeding import derive
from synthdata.trainer import Every, LossTable, OnStep, Trainer


def _resume_point(out: Path, partial: Path, expect: dict) -> Path | None:
    """The folder to resume from: the partial run, else a finished shorter run with the same settings."""
    for folder in (partial, out):
        if (folder / checkpoint.FILE).is_file():
            info, _ = checkpoint.read(folder)
            same = all(info.get(k) == v for k, v in expect.items() if k != "config_wo_steps")
            cfg, want = dict(info["config"]), dict(expect["config_wo_steps"])
            cfg.pop("steps", None)
            if same and cfg == want:
                return folder
    return None


def run(
    params: Params,
    name: str,
    resume: bool = True,
    progress: bool | None = None,
    on_step: Callable[[int], None] | None = None,
) -> dict:
    writes = [Path(params.paths.models) / name, checkpoint.loss_plots(params.paths.models, name)]
    with locks.hold(writes=writes, reads=[params.paths.prepared]):
        return _run(params, name, resume, progress, on_step)


def _run(params: Params, name: str, resume: bool, progress: bool | None, on_step: Callable[[int], None] | None) -> dict:
    cfg, common = params.generator_config(name), params.train
    train_dir = Path(params.paths.prepared) / "train"
    data = load_dataset(train_dir)
    device = setup_device(params.runtime)
    model = _build(name, cfg, data, common.seed, device)
    optimizers = model.make_optimizers()
    out = Path(params.paths.models) / name
    partial = out.with_name(f"{name}.partial")
    meta = {
        "seed": common.seed,
        "class_names": data.class_names,
        "data_sha256": sha256_file(train_dir / "metadata.parquet"),
    }
    start, rows = _restore(name, model, optimizers, out, partial, meta, cfg, resume)

    def save(step: int) -> None:
        _save(partial, model, optimizers, step, meta, rows)

    hooks = [LossTable(rows, common.log_every, cfg.steps), Every(common.checkpoint_every, cfg.steps, save)]
    hooks += [OnStep(on_step)] if on_step is not None else []
    images, labels, cuda = data.images.to(device), data.labels.to(device), device.type == "cuda"
    trainer = Trainer(model, optimizers, images, labels, common.seed, name, hooks, cuda, str(partial))
    t0 = time.perf_counter()
    # Ctrl-C may land inside a step, so nothing is saved on interrupt: resume uses the last periodic
    # checkpoint, which always holds a consistent state.
    trainer.fit(start, cfg.steps, _progress_bar(progress, start, cfg.steps, f"train {name}"))
    seconds = time.perf_counter() - t0
    save(cfg.steps)
    trained, batch = cfg.steps - start, min(cfg.batch_size, len(data.labels))
    summary = {"generator": name, "steps": cfg.steps, "resumed_from": start, "seconds": round(seconds, 2)}
    summary["images_per_s"] = round(trained * batch / seconds, 1) if trained else None
    summary["device"] = str(device)
    _finish(params, name, partial, out, rows, summary)
    return summary


def _progress_bar(progress: bool | None, start: int, total: int, desc: str) -> Callable:
    def bar(steps):
        disable = None if progress is None else not progress
        return tqdm(steps, initial=start, total=total, desc=desc, mininterval=1.0, disable=disable)

    return bar


def _finish(params: Params, name: str, partial: Path, out: Path, rows: list[dict], summary: dict) -> None:
    """The run's parameters, its summary and loss plots, then the finished run replaces ``out`` whole."""
    write_json(partial / "params.json", resolved(params))
    # the file holds only what the inputs decide (byte-reproducible); timings and resumption are printed
    write_json(partial / "summary.json", {k: summary[k] for k in ("generator", "steps", "device")})
    _write_loss_plots(checkpoint.loss_plots(params.paths.models, name), rows)
    replace_dir(partial, out)


def _build(name: str, cfg, data, seed: int, device: torch.device) -> generators.Generator:
    torch.manual_seed(derive(seed, name, "init"))
    model = generators.get(name)(cfg, tuple(data.images.shape[1:]), len(data.class_names)).to(device)
    # NHWC on a GPU only. On the CPU it makes MNIST steps faster (benchmarks/bench_train_step.py) but changes
    # the numerics, and its one full MNIST run scored worse (docs/results/mnist.md): not adopted on one run.
    return model.to(memory_format=torch.channels_last) if device.type == "cuda" else model


def _restore(name: str, model, optimizers, out: Path, partial: Path, meta: dict, cfg, resume: bool):
    """(start step, loss rows): from the run to resume (weights, optimizer and RNG states), else (0, []);
    leaves ``partial`` ready for this run's checkpoints."""
    expect = {
        "generator": name,
        "seed": meta["seed"],
        "data_sha256": meta["data_sha256"],
        "config_wo_steps": {k: v for k, v in cfg.model_dump(mode="json").items() if k != "steps"},
    }
    start, rows = 0, []
    source = _resume_point(out, partial, expect) if resume else None
    if source is not None:
        info, state = checkpoint.read(source)
        model.load_state_dict(state["model"])
        for key, opt in optimizers.items():
            opt.load_state_dict(state["optimizers"][key])
        torch.set_rng_state(state["rng"]["torch"])
        start = min(info["step"], cfg.steps)
        with open(source / LOSSES, newline="") as f:
            rows = [r for r in csv.DictReader(f) if int(r["step"]) <= start]
        print(f"train {name}: resuming from {source} at step {start}")
    if source != partial:
        shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True, exist_ok=True)
    locks.remove_stale(partial / checkpoint.FILE)  # a half-written checkpoint of a killed run
    return start, rows


def _write_loss_plots(folder: Path, rows: list[dict]) -> None:
    """One ``step,<loss>`` CSV per loss (DVC draws one chart per file, its last column against ``step``)."""
    keys = sorted({k for r in rows for k in r} - {"step"})
    with atomic_dir(folder) as tmp:
        for key in keys:
            with open(tmp / f"{key}.csv", "w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(["step", key])
                writer.writerows([r["step"], r[key]] for r in rows if key in r)


def _save(folder: Path, model, optimizers, step: int, meta: dict, rows: list[dict]) -> None:
    fields = ["step"] + sorted({k for r in rows for k in r} - {"step"})
    tmp = folder / f".{LOSSES}.tmp"
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, folder / LOSSES)
    checkpoint.save(folder, model, optimizers, step, meta)
