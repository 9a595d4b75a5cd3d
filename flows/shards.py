"""Sampling as a Prefect flow mapped shard by shard over Dask (prefect-dask's ``DaskTaskRunner``): every
shard is a task run of its own, with its own retries and its own line in the Prefect UI.

The dataset is written by the ``sample`` stage's own code (``synthdata.sample.run``, with the shards made by
this flow's task runs instead of its local processes) and recorded by ``dvc commit sample@<generator>``, so
``dvc.lock`` holds it exactly as ``dvc repro`` would have: the bytes are the same whatever made the shards
(shard k is a pure function of the checkpoint, the plan and k: ``synthdata.shards``). Run it in the project::

    python -m flows.shards --generator cgan                       # a temporary local Dask cluster
    python -m flows.shards --generator cgan --dask tcp://host:8786  # an existing one

then ``dvc repro`` (or ``python -m flows.pipeline``) goes on from ``evaluate``: ``sample@<generator>`` is up to
date. The Dask workers need this package, read access to the checkpoint and write access to the project's
``data/`` folder (shared storage).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from prefect import flow, task, unmapped
from prefect.cache_policies import NO_CACHE
from prefect.states import Failed
from prefect_dask import DaskTaskRunner

from flows.pipeline import PARAMS, USER_ERROR, _failure, _run_logged
from synthdata import sample
from synthdata.errors import SynthdataError
from synthdata.executors import DASK_ADDRESS_ENV, tune_worker
from synthdata.params import load_params
from synthdata.shards import Shard, ShardJob, make_shard


@task(
    name="sample-shard", task_run_name="{generator}-shard-{k}", retries=2, retry_delay_seconds=1, cache_policy=NO_CACHE
)
def shard_task(job: ShardJob, k: int, generator: str) -> Shard:
    tune_worker()  # one torch thread per Dask task thread, glibc's mmap threshold back (synthdata.executors)
    return make_shard(job, k)


@flow(name="synthdata-sample-shards", log_prints=True)
def sample_shards(generator: str, repo: str = ".") -> dict:
    """Sample ``generator`` shard by shard on this flow's task runner, then record the stage with ``dvc commit``."""
    root = Path(repo).resolve()

    def on_task_runner(job: ShardJob):
        futures = shard_task.map(unmapped(job), range(job.shards), generator=generator)
        for future in futures:  # in shard order: the stage writes the metadata as they come
            yield future.result()

    here = Path.cwd()
    os.chdir(root)  # the stage's paths are relative to the project, as under `dvc repro`
    try:
        summary = sample.run(load_params(PARAMS), generator, progress=False, shards=on_task_runner)
    except SynthdataError as exc:  # a user's mistake: the flow run fails with its one line, no retry, no traceback
        return Failed(message=f"{USER_ERROR}sample {generator}: {exc}")
    finally:
        os.chdir(here)
    stage = f"sample@{generator}"
    code, lines = _run_logged(root, [sys.executable, "-m", "dvc", "commit", "--force", stage], f"dvc commit {stage}")
    if code:
        return _failure(f"dvc commit {stage}", code, lines)
    print(f"{stage}: {summary['n_synthetic']} synthetic images recorded in dvc.lock")
    return summary


def task_runner(address: str | None, workers: int) -> DaskTaskRunner:
    """The Dask cluster at ``address``, else a temporary local one of ``workers`` processes x 1 thread."""
    if address:
        return DaskTaskRunner(address=address)
    kwargs = {"n_workers": workers, "threads_per_worker": 1, "processes": True, "dashboard_address": None}
    return DaskTaskRunner(cluster_kwargs=kwargs)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m flows.shards", description=__doc__.split("\n\n")[0])
    ap.add_argument("--generator", required=True, help="the generator to sample (one of params.yaml's generators)")
    ap.add_argument("--repo", default=".", help="the project folder (default: here)")
    ap.add_argument("--dask", default=os.environ.get(DASK_ADDRESS_ENV), help="a Dask scheduler's address")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="local cluster size without --dask")
    args = ap.parse_args(argv)
    try:
        params = load_params(Path(args.repo) / PARAMS)
    except SynthdataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.generator not in params.generators:
        print(f"error: --generator {args.generator!r} is not one of {params.generators}", file=sys.stderr)
        return 2
    runner = task_runner(args.dask, max(1, args.workers))
    state = sample_shards.with_options(task_runner=runner)(args.generator, args.repo, return_state=True)
    if state.is_completed():
        return 0
    message = state.message or "the flow run failed"
    print(f"error: {message.removeprefix(USER_ERROR)}", file=sys.stderr)
    return 2 if message.startswith(USER_ERROR) else 1


if __name__ == "__main__":
    sys.exit(main())
