"""Stage ``train``: fit one registered generator on the prepared train split.

The loop is :class:`synthdata.trainer.Trainer` (seeded batches, the generator's own ``training_step``, the
EMA update); its hooks here write the loss table (``losses.csv``, plotted by DVC) and checkpoints. The run
lives in ``<models>/<name>.partial`` until it finishes and then replaces ``<models>/<name>`` whole. Resume
restores everything (weights, EMA weights, optimizer states, step, RNG state): the resumed run is bit-identical
to an uninterrupted one on the CPU.

With ``runtime.nproc`` above one the stage takes its locks and re-launches itself under torchrun (see
:mod:`synthdata.distributed`); rank 0 writes the checkpoints, with every rank's RNG state, and a resume
restores each rank's own. A run resumes only at the world size it was trained with.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from tqdm import tqdm

from synthdata import checkpoint, distributed, generators, locks
from synthdata.checkpoint import LOSSES
from synthdata.dataset import load_dataset
from synthdata.distributed import World
from synthdata.errors import SynthdataError
from synthdata.fsutil import atomic_dir, replace_dir, sha256_file, write_json
from synthdata.params import Params, resolved
from synthdata.runtime import fast_path, setup_device
from synthdata.seeding import derive
from synthdata.selection import ValScorer
from synthdata.trainer import Every, Hook, LossTable, OnStep, Trainer


def _resume_point(out: Path, partial: Path, expect: dict, size: int) -> tuple[Path | None, dict]:
    """The folder to resume from (the partial run, else a finished shorter run with the same settings and
    world size) and its checkpoint's info."""
    for folder in (partial, out):
        if (folder / checkpoint.FILE).is_file():
            info, _ = checkpoint.read(folder)
            same = all(info.get(k) == v for k, v in expect.items() if k != "config_wo_steps")
            cfg, want = dict(info["config"]), dict(expect["config_wo_steps"])
            cfg.pop("steps", None)
            # an interrupted run at another world size is an error (_check_world); a finished one is not resumed
            if same and cfg == want and (folder == partial or info.get("world_size", 1) == size):
                return folder, info
    return None, {}


def _expect(params: Params, name: str) -> dict:
    """What a checkpoint must match to be resumed."""
    cfg = params.generator_config(name)
    return {
        "generator": name,
        "seed": params.train.seed,
        "data_sha256": sha256_file(Path(params.paths.prepared) / "train" / "metadata.parquet"),
        "config_wo_steps": {k: v for k, v in cfg.model_dump(mode="json").items() if k != "steps"},
        "select": _select_meta(params, name),  # a run scored another way is not resumed (its past steps are gone)
    }


def _select_every(params: Params, name: str) -> int:
    """Steps between scorings on val: ``train.select_every``; with ``train.seeds`` at least the last step."""
    t = params.train
    return t.select_every or (params.generator_config(name).steps if t.seeds else 0)


def _select_meta(params: Params, name: str) -> dict | None:
    t, every = params.train, _select_every(params, name)
    if not every:
        return None
    meta = {"every": every, "metric": t.select_metric, "images": t.select_images}
    if t.select_metric == "val_tstr_error":  # the classifier that scores is part of the criterion
        meta["tstr"] = {**params.evaluate.classifier.model_dump(mode="json"), "steps": t.select_tstr_steps}
    return meta


@dataclass(frozen=True)
class Dirs:
    """Where one training run lives: the finished run, the run in progress, the loss-plot folder."""

    out: Path
    partial: Path
    plots: Path

    @classmethod
    def of(cls, params: Params, name: str) -> "Dirs":
        out = Path(params.paths.models) / name
        return cls(out, out.with_name(f"{name}.partial"), checkpoint.loss_plots(params.paths.models, name))


def _check_world(source: Path | None, info: dict, size: int) -> None:
    trained = info.get("world_size", 1)
    if source is not None and trained != size:
        raise SynthdataError(
            f"{source}: this interrupted run was trained by {trained} process(es) and cannot resume on {size}; "
            f"set runtime.nproc: {trained}, or start over ('synthdata train --no-resume', or delete {source})"
        )


def run(
    params: Params,
    name: str,
    resume: bool = True,
    progress: bool | None = None,
    on_step: Callable[[int], None] | None = None,
) -> dict:
    writes = [Path(params.paths.models) / name, checkpoint.loss_plots(params.paths.models, name)]
    nproc = distributed.resolve_nproc(params.runtime, setup_device(params.runtime))
    # one process takes the locks: this one, or (under torchrun) the stage that launched it, else rank 0
    owner = not distributed.launched() or (not distributed.launched_by_stage() and os.environ["RANK"] == "0")
    with locks.hold(writes=writes, reads=[params.paths.prepared]) if owner else contextlib.nullcontext():
        if nproc > 1 and not distributed.launched():
            if len(params.train.seeds) > 1:
                raise SynthdataError(
                    f"train.seeds: {len(params.train.seeds)} seeds run one after another in one process; "
                    "set runtime.nproc: 1 (seeds under torchrun are not supported yet)"
                )
            return _launch(params, name, resume, nproc)
        if params.train.seeds:
            return _run_seeds(params, name, resume, progress, on_step)
        return _run(params, name, resume, progress, on_step, Dirs.of(params, name))


def _launch(params: Params, name: str, resume: bool, nproc: int) -> dict:
    """Train on ``nproc`` processes of this machine (torchrun); the checks that can fail on a user's input
    run here first, so that they stop with one line instead of one per process."""
    cfg, out = params.generator_config(name), Path(params.paths.models) / name
    distributed.per_rank_batch(cfg.batch_size, nproc, f"train.{name}.batch_size")
    if resume:
        _check_world(*_resume_point(out, out.with_name(f"{name}.partial"), _expect(params, name), nproc), nproc)
    out.parent.mkdir(parents=True, exist_ok=True)
    # the stale-sibling pattern of the model folder: a killed launcher's file is removed by the next run
    with tempfile.NamedTemporaryFile("w", dir=out.parent, prefix=f".{name}.tmp-params-", suffix=".json") as f:
        json.dump(resolved(params), f)  # JSON is YAML: the processes read it as their params file
        f.flush()
        argv = ["train", "--params", f.name, "--generator", name] + ([] if resume else ["--no-resume"])
        distributed.launch(nproc, argv, params.runtime.threads or os.cpu_count() or 1)
    summary = json.loads((out / "summary.json").read_text())
    return {**summary, "nproc": nproc}


def _run(
    params: Params, name: str, resume: bool, progress: bool | None, on_step: Callable[[int], None] | None, dirs: Dirs
) -> dict:
    cfg, common = params.generator_config(name), params.train
    data = load_dataset(Path(params.paths.prepared) / "train")
    world, device = distributed.start(setup_device(params.runtime), params.runtime.threads)
    model = _build(name, cfg, data, common.seed, device, fast_path(params.runtime, device)["channels_last"])
    optimizers = model.make_optimizers()
    partial = dirs.partial
    meta = {"seed": common.seed, "class_names": data.class_names, "data_sha256": _expect(params, name)["data_sha256"]}
    meta.update({"world_size": world.size} if world.distributed else {})
    every = _select_every(params, name)
    meta.update({"select": _select_meta(params, name)} if every else {})
    start, rows, picks = _restore(params, name, model, optimizers, dirs, world, resume)

    def save(step: int) -> None:
        _save(partial, model, optimizers, step, meta, rows, world, picks)

    hooks = [LossTable(rows, common.log_every, cfg.steps)]
    if every and world.main:  # rank 0 scores; the others wait for it at the next step's collectives
        scorer = ValScorer(params, name, device)
        hooks.append(Select(scorer, picks, every, cfg.steps, common.select_metric, partial, meta))
    hooks.append(Every(common.checkpoint_every, cfg.steps, save))
    hooks += [OnStep(on_step)] if on_step is not None else []
    images, labels, fast = data.images.to(device), data.labels.to(device), fast_path(params.runtime, device)
    trainer = Trainer(
        model, optimizers, images, labels, common.seed, name, hooks, fast["channels_last"], str(partial), world
    )
    trainer.bf16, trainer.compile = fast["bf16"], fast["compile"]
    t0 = time.perf_counter()
    # Ctrl-C may land inside a step, so nothing is saved on interrupt: resume uses the last periodic
    # checkpoint, which always holds a consistent state.
    trainer.fit(start, cfg.steps, _progress_bar(progress if world.main else False, start, cfg.steps, f"train {name}"))
    seconds = time.perf_counter() - t0
    save(cfg.steps)
    summary = _summary(name, cfg, start, seconds, len(data.labels), device, world)
    summary.update(_selected(picks, common.select_metric) if every else {})
    if world.main:
        _finish(params, name, dirs, rows, summary, picks)
        if dirs == Dirs.of(params, name):  # a run of its own (not one seed of several): its selection record
            table = _seed_table([{"seed": common.seed, **_kept(summary)}], common.select_metric)
            write_json(dirs.out.with_name(f"{name}.selection.json"), table)
    world.barrier()
    distributed.stop(world)
    return summary


def _run_seeds(
    params: Params, name: str, resume: bool, progress: bool | None, on_step: Callable[[int], None] | None
) -> dict:
    """One run per seed of ``train.seeds``, one after another, each scored on the real val split; the best
    seed's selected snapshot becomes the generator (``selected.pt``). The model folder keeps every seed's run
    (``seed-<s>/``, each resumable) and ``seeds.json``; ``<name>.selection.json`` (DVC metrics) has each seed's
    val score, the winner and the spread."""
    top = Dirs.of(params, name)
    work = top.out.with_name(f"{name}.seeds.partial")  # a *.partial: ignored by git and DVC
    work.mkdir(parents=True, exist_ok=True)
    metric, results = params.train.select_metric, []
    rows_by_seed: dict[int, tuple[list, list]] = {}
    for seed in params.train.seeds:
        one = params.model_copy(update={"train": params.train.model_copy(update={"seed": seed})})
        dirs = Dirs(work / f"seed-{seed}", work / f"seed-{seed}.partial", work / f".seed-{seed}.losses")
        finished = top.out / f"seed-{seed}"
        if resume and not dirs.out.exists() and not dirs.partial.exists() and finished.is_dir():
            shutil.copytree(finished, dirs.out)  # the last finished multi-seed run's: resumed, not retrained
        summary = _run(one, name, resume, progress, on_step, dirs)
        results.append({"seed": seed, **_kept(summary)})
        rows_by_seed[seed] = (_read_rows(dirs.out / LOSSES), _read_rows(dirs.out / checkpoint.SELECTION))
    table = _seed_table(results, metric)
    winner = table["winner"]
    for f in (checkpoint.SELECTED, Path(checkpoint.SELECTED).with_suffix(".json").name):
        shutil.copy2(work / f"seed-{winner}" / f, work / f)
    write_json(work / "seeds.json", table)
    write_json(work / "params.json", resolved(params))
    summary = {"generator": name, "steps": params.generator_config(name).steps, "device": results[0]["device"]}
    summary.update({k: v for k, v in results[table["seeds"].index(winner)].items() if k.startswith("selected")})
    summary["selected_seed"] = winner
    write_json(work / "summary.json", summary)
    for seed in params.train.seeds:
        shutil.rmtree(work / f".seed-{seed}.losses", ignore_errors=True)
    _write_seed_plots(top.plots, rows_by_seed)
    write_json(top.out.with_name(f"{name}.selection.json"), table)
    replace_dir(work, top.out)
    return {**summary, "seeds": table["scores"]}


def _read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _seed_table(results: list[dict], metric: str) -> dict:
    """Each seed's best val score and step, the winner (the lowest score; the first of equal ones) and the
    spread (max - min); scores are null for a run not scored on val (``train.select_every: 0``)."""
    scores = [r["selected_scores"][metric] if "selected_scores" in r else None for r in results]
    finite = [x if x is not None and x == x else float("inf") for x in scores]
    best = min(range(len(results)), key=lambda i: finite[i])
    spread = max(finite) - min(finite) if all(x < float("inf") for x in finite) else None
    return {
        "metric": metric,
        "seeds": [r["seed"] for r in results],
        "scores": scores,
        "steps": [r.get("selected_step") for r in results],
        "winner": results[best]["seed"],
        "best": scores[best],
        "spread": spread,
    }


def _write_seed_plots(folder: Path, rows_by_seed: dict[int, tuple[list, list]]) -> None:
    """``seed-<s>-<key>.csv`` (step, value) for every loss and val criterion of every seed."""
    with atomic_dir(folder) as tmp:
        for seed, tables in rows_by_seed.items():
            _write_curves(tmp, tables, f"seed-{seed}-")


def _summary(name: str, cfg, start: int, seconds: float, n: int, device: torch.device, world: World) -> dict:
    trained, batch = cfg.steps - start, min(cfg.batch_size, n)
    summary = {"generator": name, "steps": cfg.steps, "resumed_from": start, "seconds": round(seconds, 2)}
    summary["images_per_s"] = round(trained * batch / seconds, 1) if trained else None
    summary["device"] = str(device) if not world.distributed else f"{device.type} x {world.size}"
    return summary


def _progress_bar(progress: bool | None, start: int, total: int, desc: str) -> Callable:
    def bar(steps):
        disable = None if progress is None else not progress
        return tqdm(steps, initial=start, total=total, desc=desc, mininterval=1.0, disable=disable)

    return bar


def _finish(params: Params, name: str, dirs: Dirs, rows: list[dict], summary: dict, picks: list[dict]) -> None:
    """The run's parameters, its summary and loss plots, then the finished run replaces ``out`` whole."""
    write_json(dirs.partial / "params.json", resolved(params))
    # the file holds only what the inputs decide (byte-reproducible); timings and resumption are printed
    write_json(dirs.partial / "summary.json", _kept(summary))
    _write_loss_plots(dirs.plots, rows, picks)
    replace_dir(dirs.partial, dirs.out)


def _kept(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k in ("generator", "steps", "device") or k.startswith("selected")}


def _selected(picks: list[dict], metric: str) -> dict:
    """The chosen step of the selection curve and its scores (the first of equal best scores)."""
    if not picks:
        return {}
    best = min(picks, key=lambda r: (_score(r, metric), int(r["step"])))
    return {
        "selected_step": int(best["step"]),
        "selected_metric": metric,
        "selected_scores": {k: float(v) for k, v in best.items() if k != "step"},
    }


def _score(row: dict, metric: str) -> float:
    value = float(row[metric])
    return value if value == value else float("inf")  # nan is never the best


class Select(Hook):
    """Every ``every`` steps and at the last: score the sampling networks on the real val split; a step better
    than every earlier one (strictly) writes its snapshot as ``selected.pt`` (the generator ``sample`` uses)."""

    def __init__(self, scorer, picks: list[dict], every: int, last: int, metric: str, folder: Path, meta: dict):
        self.scorer, self.picks, self.every, self.last = scorer, picks, every, last
        self.metric, self.folder, self.meta = metric, folder, meta

    def after_step(self, trainer: Trainer, step: int, losses: dict[str, float]) -> None:
        if step % self.every and step != self.last:
            return
        best = min((_score(r, self.metric) for r in self.picks), default=float("inf"))
        scores = self.scorer(trainer.model)
        self.picks.append({"step": step, **{k: repr(float(v)) for k, v in scores.items()}})
        if _score(self.picks[-1], self.metric) < best:
            model, optimizers = trainer.model, trainer.optimizers
            checkpoint.save(self.folder, model, optimizers, step, self.meta, file=checkpoint.SELECTED)


def _build(name: str, cfg, data, seed: int, device: torch.device, channels_last: bool) -> generators.Generator:
    torch.manual_seed(derive(seed, name, "init"))
    model = generators.get(name)(cfg, tuple(data.images.shape[1:]), len(data.class_names)).to(device)
    # NHWC: runtime.channels_last (auto: on a GPU only). On the CPU it makes MNIST steps faster
    # (benchmarks/bench_train_step.py) but changes the numerics, and its one full MNIST run scored worse
    # (docs/results/mnist.md): not the CPU default on one run.
    return model.to(memory_format=torch.channels_last) if channels_last else model


def _restore(params: Params, name: str, model, optimizers, dirs: Dirs, world: World, resume: bool):
    """(start step, loss rows, selection rows): from the run to resume (weights, optimizer and RNG states),
    else (0, [], []); leaves ``dirs.partial`` ready for this run's checkpoints (rank 0 prepares it; every rank
    reads)."""
    out, partial, cfg = dirs.out, dirs.partial, params.generator_config(name)
    start, rows, picks = 0, [], []
    source, info = _resume_point(out, partial, _expect(params, name), world.size) if resume else (None, {})
    _check_world(source, info, world.size)
    if source is not None:
        info, state = checkpoint.read(source)
        model.load_state_dict(state["model"])
        for key, opt in optimizers.items():
            opt.load_state_dict(state["optimizers"][key])
        rng = state["rng"]
        torch.set_rng_state(rng["torch_ranks"][world.rank] if world.distributed else rng["torch"])
        start = min(info["step"], cfg.steps)
        rows = [r for r in _read_rows(source / LOSSES) if int(r["step"]) <= start]
        picks = [r for r in _read_rows(source / checkpoint.SELECTION) if int(r["step"]) <= start]
        if world.main:
            print(f"train {name}: resuming from {source} at step {start}")
    world.barrier()  # every rank has read the checkpoint before rank 0 touches the partial folder
    if world.main:
        if source != partial:
            shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True, exist_ok=True)
        for stale in (checkpoint.FILE, checkpoint.SELECTED):
            locks.remove_stale(partial / stale)  # a half-written checkpoint of a killed run
        if source not in (None, partial) and picks:  # a finished run extended: its selected snapshot goes along
            for f in (checkpoint.SELECTED, Path(checkpoint.SELECTED).with_suffix(".json").name):
                shutil.copy2(source / f, partial / f)
    return start, rows, picks


def _write_loss_plots(folder: Path, rows: list[dict], picks: list[dict] | None = None) -> None:
    """One ``step,<loss>`` CSV per loss, and one per selection criterion on val (DVC draws one chart per file,
    its last column against ``step``)."""
    with atomic_dir(folder) as tmp:
        _write_curves(tmp, (rows, picks or []))


def _write_curves(folder: Path, tables, prefix: str = "") -> None:
    """``<prefix><key>.csv`` with the columns step and key, for every key of every table of rows."""
    for table in tables:
        for key in sorted({k for r in table for k in r} - {"step"}):
            with open(folder / f"{prefix}{key}.csv", "w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(["step", key])
                writer.writerows([r["step"], r[key]] for r in table if key in r)


def _save(
    folder: Path, model, optimizers, step: int, meta: dict, rows: list[dict], world: World, picks: list[dict]
) -> None:
    """Rank 0 writes the loss table (and selection curve) and the checkpoint, with every rank's RNG state
    (collective)."""
    states = world.gather(torch.get_rng_state())
    if not world.main:
        return
    for name, table in ((LOSSES, rows), (checkpoint.SELECTION, picks)):
        if name == checkpoint.SELECTION and not table:
            continue
        fields = ["step"] + sorted({k for r in table for k in r} - {"step"})
        tmp = folder / f".{name}.tmp"
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(table)
        os.replace(tmp, folder / name)
    rng = {"torch": states[0], "torch_ranks": states} if world.distributed else None
    checkpoint.save(folder, model, optimizers, step, meta, rng)
