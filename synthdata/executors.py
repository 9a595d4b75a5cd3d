"""Where the units of work of a stage run: local forked processes (the default) or a Dask cluster.

A unit of work is ``fn(task)`` with ``fn`` a module-level function and ``task`` small and picklable; its
result is a pure function of the task, so a task made twice (Dask re-runs the tasks of a worker that died,
prefect #15442) gives the same result and the second copy is dropped. The stages (``sample``, ``evaluate``)
consume results in task order and record what they make; no scheduling is written here.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable, Iterator, Sequence

import torch

from synthdata.errors import SynthdataError
from synthdata.procs import die_with_parent

DASK_ADDRESS_ENV = "SYNTHDATA_DASK_ADDRESS"


def dask_address(runtime) -> str | None:
    """The Dask scheduler the stages use: ``SYNTHDATA_DASK_ADDRESS``, else ``runtime.dask_address``, else none."""
    return os.environ.get(DASK_ADDRESS_ENV) or getattr(runtime, "dask_address", None) or None


def _init_local(parent: int) -> None:
    die_with_parent(parent)
    torch.set_num_threads(1)  # one process per core


def map_local(fn: Callable[[Any], Any], tasks: Sequence, workers: int, inline: bool = False) -> Iterator[Any]:
    """``fn(task)`` for each task, in task order, from ``workers`` forked processes with one thread each (a
    bounded number in flight); ``inline`` (or one worker, or one task): in this process (CUDA does not survive
    a fork)."""
    if inline or workers <= 1 or len(tasks) <= 1:
        yield from (fn(t) for t in tasks)
        return
    ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else None)
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_local, initargs=(os.getpid(),)) as pool:
        pending, submitted = {}, 0
        for k in range(len(tasks)):
            while submitted < len(tasks) and submitted < k + 2 * workers:
                pending[submitted] = pool.submit(fn, tasks[submitted])
                submitted += 1
            yield pending.pop(k).result()


def tune_worker() -> None:
    """Run on each Dask worker: one torch thread (parallelism comes from the worker's task threads), and glibc's
    dynamic mmap threshold back: Dask's nanny sets ``MALLOC_TRIM_THRESHOLD_``, which freezes that threshold at
    128 KiB, so every activation tensor is a fresh mmap and sampling runs at half speed (measured:
    benchmarks/bench_sampling.py)."""
    torch.set_num_threads(1)
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None)
        libc.mallopt(-3, 64 << 20)  # M_MMAP_THRESHOLD: tensors below 64 MiB come from the reused heap
        libc.mallopt(-1, 128 << 20)  # M_TRIM_THRESHOLD: give memory back above 128 MiB of free heap


def map_dask(fn: Callable[[Any], Any], tasks: Sequence, address: str) -> Iterator[tuple[int, Any]]:
    """``(i, fn(tasks[i]))`` from a Dask cluster in the order they finish, each ``i`` once (a task that came
    back twice is dropped); up to 3 retries per task."""
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise SynthdataError("runtime.dask_address is set but the 'distributed' package is not installed") from None
    try:
        client = Client(address, timeout="20s")
    except (OSError, TimeoutError) as exc:
        raise SynthdataError(f"runtime.dask_address: no Dask scheduler at {address} ({exc}); start one or unset it")
    with client:
        client.run(tune_worker)
        futures = client.map(fn, list(tasks), pure=False, retries=3)
        index = {f.key: i for i, f in enumerate(futures)}
        seen: set[int] = set()
        for future in as_completed(futures):
            i = index[future.key]
            result = future.result()
            future.release()
            if i not in seen:
                seen.add(i)
                yield i, result


def ordered(results: Iterator[tuple[int, Any]]) -> Iterator[Any]:
    """Results that arrive in any order, yielded in task order (a reorder buffer holds the early ones)."""
    waiting: dict[int, Any] = {}
    expect = 0
    for i, result in results:
        waiting[i] = result
        while expect in waiting:
            yield waiting.pop(expect)
            expect += 1


def run(fn: Callable[[Any], Any], tasks: Sequence, runtime, workers: int, inline: bool = False) -> Iterator[Any]:
    """``fn(task)`` for each task, in task order: on the Dask cluster ``runtime`` names, else locally."""
    address = dask_address(runtime)
    if address:
        return ordered(map_dask(fn, tasks, address))
    return map_local(fn, tasks, workers or os.cpu_count() or 1, inline)
