"""Stage ``train``: fit one registered generator on the prepared train split.

A generic loop: seeded batches, the generator's own ``training_step``, the EMA update, a loss table
(``losses.csv``, plotted by DVC) and checkpoints. The run lives in ``<models>/<name>.partial`` until it
finishes and then replaces ``<models>/<name>`` whole. Resume restores everything (weights, EMA weights,
optimizer states, step, RNG state): the resumed run is bit-identical to an uninterrupted one on the CPU.
"""

from __future__ import annotations

import csv
import math
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
from synthdata.errors import SynthdataError
from synthdata.fsutil import replace_dir, sha256_file, write_json
from synthdata.params import Params, resolved
from synthdata.runtime import BatchSampler, setup_device
from synthdata.seeding import derive


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


def run(params: Params, name: str, resume: bool = True, progress: bool | None = None,
        on_step: Callable[[int], None] | None = None) -> dict:
    with locks.hold(writes=[Path(params.paths.models) / name], reads=[params.paths.prepared]):
        return _run(params, name, resume, progress, on_step)


def _run(params: Params, name: str, resume: bool, progress: bool | None,
         on_step: Callable[[int], None] | None) -> dict:
    cls = generators.get(name)
    cfg = params.generator_config(name)
    common = params.train
    train_dir = Path(params.paths.prepared) / "train"
    data = load_dataset(train_dir)
    device = setup_device(params.runtime)
    torch.manual_seed(derive(common.seed, name, "init"))
    model = cls(cfg, tuple(data.images.shape[1:]), len(data.class_names)).to(device)
    # NHWC on a GPU only. On the CPU it makes MNIST steps faster (benchmarks/bench_train_step.py) but changes
    # the numerics, and its one full MNIST run scored worse (docs/results/mnist.md): not adopted on one run.
    channels_last = device.type == "cuda"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizers = model.make_optimizers()

    out = Path(params.paths.models) / name
    partial = out.with_name(f"{name}.partial")
    meta = {"seed": common.seed, "class_names": data.class_names,
            "data_sha256": sha256_file(train_dir / "metadata.parquet")}
    expect = {"generator": name, "seed": common.seed, "data_sha256": meta["data_sha256"],
              "config_wo_steps": {k: v for k, v in cfg.model_dump(mode="json").items() if k != "steps"}}
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

    images, labels = data.images.to(device), data.labels.to(device)
    batches = BatchSampler(len(labels), cfg.batch_size, common.seed)
    t0 = time.perf_counter()
    model.train()
    # Ctrl-C may land inside a step, so nothing is saved on interrupt: resume uses the last periodic
    # checkpoint, which always holds a consistent state.
    for step in tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc=f"train {name}",
                     disable=(None if progress is None else not progress), mininterval=1.0):
        idx = batches(step).to(device)
        real = model.pad(images[idx].float().div_(127.5).sub_(1.0))
        if channels_last:
            real = real.contiguous(memory_format=torch.channels_last)
        rng = torch.Generator(device=device).manual_seed(derive(common.seed, name, step))
        losses = model.training_step(real, labels[idx], rng, optimizers)
        done = step + 1
        _check_finite(name, losses, done, partial)
        model.update_ema(step)
        if done % common.log_every == 0 or done == cfg.steps:
            rows.append({"step": done, **{k: f"{float(v):.6g}" for k, v in losses.items()}})
        if done % common.checkpoint_every == 0 and done < cfg.steps:
            _save(partial, model, optimizers, done, meta, rows)
        if on_step is not None:
            on_step(done)
    seconds = time.perf_counter() - t0
    _save(partial, model, optimizers, cfg.steps, meta, rows)
    trained = cfg.steps - start
    summary = {"generator": name, "steps": cfg.steps, "resumed_from": start, "seconds": round(seconds, 2),
               "images_per_s": round(trained * batches.batch / seconds, 1) if trained else None,
               "device": str(device)}
    write_json(partial / "params.json", resolved(params))
    # the file holds only what the inputs decide (byte-reproducible); timings and resumption are printed
    write_json(partial / "summary.json", {k: summary[k] for k in ("generator", "steps", "device")})
    replace_dir(partial, out)
    return summary


def _check_finite(name: str, losses: dict, step: int, partial: Path) -> None:
    """Stop at the first step whose loss is inf or nan: nothing after it is kept (the last checkpoint in
    ``partial`` is from before it, and the finished model is never replaced)."""
    for key, value in losses.items():
        value = float(value)
        if not math.isfinite(value):
            raise SynthdataError(
                f"train {name}: {key} is {value} at step {step}; training stopped and nothing after the last "
                f"checkpoint in {partial} is kept. Lower the learning rate(s) in train.{name}, or check the data")


def _save(folder: Path, model, optimizers, step: int, meta: dict, rows: list[dict]) -> None:
    fields = ["step"] + sorted({k for r in rows for k in r} - {"step"})
    tmp = folder / f".{LOSSES}.tmp"
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, folder / LOSSES)
    checkpoint.save(folder, model, optimizers, step, meta)
