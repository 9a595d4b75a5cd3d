"""Checkpoints as tensors plus JSON.

``checkpoint.pt`` holds only tensors and plain containers (model weights including the EMA copy,
optimizer states, the torch RNG state) plus the JSON description as a string, and is always read with
``torch.load(..., weights_only=True)``: no pickled code. ``checkpoint.json`` beside it is the same
description for people and tools. The .pt file is written atomically, so it is never half-written.
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
FILE = "checkpoint.pt"
LOSSES = "losses.csv"  # the training losses beside the checkpoint (a DVC plot)


def _path(location: str | os.PathLike) -> Path:
    p = Path(location)
    return p / FILE if p.is_dir() else p


def save(folder: Path, model: generators.Generator, optimizers: dict[str, torch.optim.Optimizer],
         step: int, meta: dict[str, Any]) -> str:
    """Write checkpoint.pt and checkpoint.json into ``folder``; returns the sha256 of checkpoint.pt."""
    info = {
        "format": FORMAT, "generator": model.name, "config": model.config.model_dump(mode="json"),
        "image_shape": list(model.image_shape), "num_classes": model.num_classes, "step": step,
        "torch": torch.__version__, **meta,
    }
    state = {
        "info": json.dumps(info, sort_keys=True),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizers": {name: opt.state_dict() for name, opt in optimizers.items()},
        "rng": {"torch": torch.get_rng_state()},
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(folder / FILE, buffer.getvalue())
    sha = sha256_file(folder / FILE)
    write_json(folder / "checkpoint.json", {**info, "sha256": sha})
    return sha


def read(location: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """(info, state) of a checkpoint file or of the folder holding one."""
    path = _path(location)
    if not path.is_file():
        raise SynthdataError(f"{path}: checkpoint not found; run 'synthdata train' first or pass --checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        info = json.loads(state["info"])
    except Exception as exc:  # torch raises several types for truncated or foreign files
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise SynthdataError(f"{path}: not a readable synthdata checkpoint (truncated or corrupt? {reason}); "
                             "train again or restore the file") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise SynthdataError(f"{path}: unknown checkpoint format {info.get('format')!r}, expected {FORMAT!r}")
    return info, state


def build(info: dict[str, Any]) -> generators.Generator:
    cls = generators.get(info["generator"])
    return cls(cls.Config.model_validate(info["config"]), info["image_shape"], info["num_classes"])


def load_generator(location: str | os.PathLike, expect: str | None = None,
                   device: str | torch.device = "cpu") -> generators.Generator:
    """Rebuild a trained generator from its checkpoint (sampling networks in eval mode).

    The result carries ``class_names`` and ``checkpoint_sha256`` for provenance.
    """
    path = _path(location)
    info, state = read(path)
    if expect is not None and info["generator"] != expect:
        raise SynthdataError(f"{path}: checkpoint is from generator {info['generator']!r}, not {expect!r}; "
                             "pass the matching --generator or checkpoint")
    model = build(info)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise SynthdataError(f"{path}: weights do not match generator {info['generator']!r} "
                             f"({str(exc).splitlines()[0][:120]})") from None
    model.class_names = info.get("class_names") or [str(i) for i in range(model.num_classes)]
    model.checkpoint_sha256 = sha256_file(path)
    return model.to(device).eval()
