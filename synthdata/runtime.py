"""Where and how networks run: the device, the CPU threads, and the seeded batch order.

The one place that knows the device (``runtime.device``: auto = the GPU when one is present) and the CPU
threads (``runtime.threads``); every stage that runs networks calls :func:`setup_device`. Scale-out
(rank, world size) belongs here too.
"""

from __future__ import annotations

import os

import torch

from synthdata.errors import SynthdataError
from synthdata.seeding import derive


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SynthdataError("runtime.device: 'cuda' was asked for but no GPU is visible; use 'auto' or 'cpu'")
    return torch.device(name)


# What `auto` means on CUDA for each fast-path switch (always off on the CPU: CPU outputs stay byte-identical).
# channels_last was already the GPU default; bf16 and compile stay off until benchmarks/gpu_check.py has measured
# them on a GPU (none has been available yet).
GPU_AUTO = {"bf16": False, "channels_last": True, "compile": False}


def fast_path(runtime, device: torch.device) -> dict[str, bool]:
    """The training fast-path switches (``runtime.bf16``, ``channels_last``, ``compile``) resolved for ``device``."""
    cuda = device.type == "cuda"
    out = {}
    for key, gpu_default in GPU_AUTO.items():
        value = getattr(runtime, key)
        out[key] = (gpu_default and cuda) if value == "auto" else bool(value)
    if out["bf16"] and not cuda:
        raise SynthdataError("runtime.bf16: bf16 autocast is for CUDA here; set it to auto or false on the CPU")
    return out


def setup_device(runtime) -> torch.device:
    """The device named by ``runtime.device``, with ``runtime.threads`` CPU threads (0: every core)."""
    torch.set_num_threads(runtime.threads or os.cpu_count() or 1)
    return pick_device(runtime.device)


class BatchSampler:
    """Batch ``step`` is slice ``step % n_batches`` of a permutation seeded by (seed, epoch)."""

    def __init__(self, n: int, batch_size: int, seed: int):
        self.n, self.batch = n, min(batch_size, n)
        self.per_epoch = max(1, n // self.batch)
        self.seed, self._epoch, self._perm = seed, -1, None

    def __call__(self, step: int) -> torch.Tensor:
        epoch, i = divmod(step, self.per_epoch)
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(derive(self.seed, "epoch", epoch))
            self._epoch, self._perm = epoch, torch.randperm(self.n, generator=g)
        return self._perm[i * self.batch : (i + 1) * self.batch]
