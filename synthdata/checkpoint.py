"""Checkpoints as tensors plus JSON: one format for generators and classifiers.

A checkpoint file holds only tensors and plain containers plus an ``info`` JSON string whose ``format`` tag
says what it is (``synthdata-checkpoint/1`` for a generator: weights including the EMA copy, optimizer
states, the torch RNG state; ``synthdata-classifier/1`` for a classifier: weights and architecture). It is
always read with ``torch.load(..., weights_only=True)`` (no pickled code), its tag checked, and written
atomically, so it is never half-written. A JSON file beside it (``checkpoint.json``, ``domain.json``, ...)
is the same description for people and tools.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import torch

from synthdata import generators
from synthdata.errors import SynthdataError
from synthdata.fsutil import atomic_write_bytes, sha256_file, write_json

FORMAT = "synthdata-checkpoint/1"
CLASSIFIER_FORMAT = "synthdata-classifier/1"
FILE = "checkpoint.pt"  # the last step's full state: what a resumed run continues from
SELECTED = "selected.pt"  # with train.select_every: the best step on the real val split (what sample uses)
SELECTION = "selection.csv"  # its curve: step and every val criterion (resume reads it back)
LOSSES = "losses.csv"  # the training losses beside the checkpoint (resume reads it back)


def loss_plots(models: str | os.PathLike, name: str) -> Path:
    """The folder of one ``step,<loss>`` CSV per loss that the train stage declares as its DVC plots (a
    sibling of the model folder: DVC plots may not lie inside another output)."""
    return Path(models) / f"{name}.losses"


def _path(location: str | os.PathLike) -> Path:
    p = Path(location)
    return p / FILE if p.is_dir() else p


def write_tensors(path: Path, info: dict[str, Any], tensors: dict[str, Any]) -> str:
    """Write ``info`` (with its ``format`` tag) and ``tensors`` atomically; returns the file's sha256."""
    if "format" not in info:
        raise ValueError("checkpoint info needs a 'format' tag")
    buffer = io.BytesIO()
    torch.save({"info": json.dumps(info, sort_keys=True), **tensors}, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    return sha256_file(path)


def read_tensors(path: Path, fmt: str, what: str, remedy: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(info, state) of a file written by :func:`write_tensors` with format ``fmt``; one-line errors that name
    ``what`` it should be and the ``remedy``."""
    if not path.is_file():
        raise SynthdataError(f"{path}: {what} not found; {remedy} first")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        info = json.loads(state["info"])
    except Exception as exc:  # torch raises several types for truncated or foreign files
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise SynthdataError(
            f"{path}: not a readable {what} (truncated or corrupt? {reason}); {remedy} again or restore the file"
        ) from None
    found = info.get("format") if isinstance(info, dict) else None
    if found != fmt:
        raise SynthdataError(f"{path}: unknown checkpoint format {found!r}, expected {fmt!r} ({what}); {remedy} again")
    return info, state


def save(
    folder: Path,
    model: generators.Generator,
    optimizers: dict[str, torch.optim.Optimizer],
    step: int,
    meta: dict[str, Any],
    rng: dict[str, Any] | None = None,
    file: str = FILE,
) -> str:
    """Write ``file`` (checkpoint.pt) and its JSON description (checkpoint.json) into ``folder``; returns the
    sha256 of ``file``. ``rng`` defaults to this process's torch RNG state (distributed training adds every
    rank's)."""
    info = {
        "format": FORMAT,
        "generator": model.name,
        "config": model.config.model_dump(mode="json"),
        "image_shape": list(model.image_shape),
        "num_classes": model.num_classes,
        "step": step,
        "torch": torch.__version__,
        **meta,
    }
    sha = write_tensors(
        folder / file,
        info,
        {
            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "optimizers": {name: opt.state_dict() for name, opt in optimizers.items()},
            "rng": rng or {"torch": torch.get_rng_state()},
        },
    )
    write_json(folder / Path(file).with_suffix(".json"), {**info, "sha256": sha})
    return sha


def read(location: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """(info, state) of a generator checkpoint file or of the folder holding one."""
    return read_tensors(
        _path(location), FORMAT, "synthdata generator checkpoint", "run 'synthdata train' (or pass --checkpoint)"
    )


def build(info: dict[str, Any]) -> generators.Generator:
    cls = generators.get(info["generator"])
    return cls(cls.Config.model_validate(info["config"]), info["image_shape"], info["num_classes"])


def load_generator(
    location: str | os.PathLike, expect: str | None = None, device: str | torch.device = "cpu"
) -> generators.Generator:
    """Rebuild a trained generator from its checkpoint (sampling networks in eval mode): a file, or a model
    folder (its selected snapshot when training selected one on val, else its last checkpoint).

    The result carries ``class_names``, ``checkpoint_sha256`` and ``checkpoint_path`` for provenance.
    """
    selected = Path(location) / SELECTED
    path = selected if selected.is_file() else _path(location)
    info, state = read(path)
    if expect is not None and info["generator"] != expect:
        raise SynthdataError(
            f"{path}: checkpoint is from generator {info['generator']!r}, not {expect!r}; "
            "pass the matching --generator or checkpoint"
        )
    model = build(info)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise SynthdataError(
            f"{path}: weights do not match generator {info['generator']!r} ({str(exc).splitlines()[0][:120]})"
        ) from None
    model.class_names = info.get("class_names") or [str(i) for i in range(model.num_classes)]
    model.checkpoint_sha256 = sha256_file(path)
    model.checkpoint_path = str(path.resolve())
    return model.to(device).eval()
