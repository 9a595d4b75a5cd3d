"""The sampling flow of ``flows/shards.py``: shards mapped as Prefect task runs over a 2-process Dask cluster
(prefect-dask's DaskTaskRunner), the dataset written by the sample stage's code and recorded by ``dvc commit``:
the same bytes as ``dvc repro`` made with one process, one task run per shard, the stage up to date."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from flows.shards import main, sample_shards, task_runner
from tests.conftest import run_tool

pytestmark = pytest.mark.e2e


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _task_runs(flow_run_id) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return sorted(r.name for r in runs if r.state and r.state.is_completed())


def test_shards_mapped_over_dask_by_prefect_write_and_record_the_stage_bytes(prefect_api, committed):
    root = committed
    datasets = [root / "data/synthetic/cgan", root / "data/augmented/cgan"]
    before = [_files(d) for d in datasets]
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["sample"]["shard_size"] = 7  # several shards (the bytes do not depend on the shard size)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    total = sum(1 for f in before[0] if f.endswith(".png"))
    assert total > 14

    state = sample_shards.with_options(task_runner=task_runner(None, 2))("cgan", str(root), return_state=True)

    assert state.is_completed(), state.message
    assert _task_runs(state.state_details.flow_run_id) == sorted(f"cgan-shard-{k}" for k in range(-(-total // 7)))
    after = [_files(d) for d in datasets]
    for old, new in zip(before, after):
        assert {k: v for k, v in new.items() if k != "params.json"} == {
            k: v for k, v in old.items() if k != "params.json"
        }
    assert json.loads(after[0]["params.json"])["sample"]["shard_size"] == 7
    status = run_tool("dvc", "status", "sample@cgan", cwd=root)  # recorded: evaluate@cgan sees the new params.json
    assert status.returncode == 0 and "up to date" in status.stdout, status.stdout


def test_an_unknown_generator_is_refused_in_one_line(committed, capsys):
    assert main(["--generator", "gan", "--repo", str(committed)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "'gan' is not one of" in err


def test_a_missing_generator_fails_the_flow_run_in_one_line(prefect_api, committed, capsys):
    import shutil

    shutil.rmtree(committed / "data/models/cvae")
    assert main(["--generator", "cvae", "--repo", str(committed), "--workers", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: sample cvae: ") and "run 'synthdata train'" in err[0]
