"""The Prefect flow under Prefect's test harness (one server for the session), on a throw-away copy of the
repository built with tiny settings: overrides recorded by DVC and committed by the release, stage logs in
the run log, the markdown artifact, a bad parameter refused before anything runs, and a stage retried
with backoff while another process holds DVC's repository lock (released when the first attempt has failed,
not after a fixed time)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import AFTER_PUBLISH, other_generator, run_tool, tool_env

pytestmark = pytest.mark.e2e

AFTER_SAMPLE = ["sample@cgan", "sample@cvae", "evaluate@cgan", "evaluate@cvae", "publish", "report"]


def _client():
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def _flow_logs(flow_run_id) -> list[str]:
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10)
    with _client() as client:
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
    return [log.message for log in logs]


def test_flow_runs_the_dvc_stages_records_overrides_and_releases(committed: Path, prefect_api):
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.pipeline import pipeline

    state = pipeline(params={"sample.per_class": 2}, repo=str(committed), return_state=True)
    assert state.is_completed(), state.message
    result = state.result()
    assert result["ran"] == AFTER_SAMPLE and result["overrides"] == ["sample.per_class=2"]
    assert result["released"]["version"] == "synthdata-v1"

    # DVC agrees with what ran, and the release committed the override with the lock file
    assert "up to date" in run_tool("dvc", "status", cwd=committed).stdout
    assert yaml.safe_load((committed / "params.yaml").read_text())["sample"]["per_class"] == 2
    lock = yaml.safe_load((committed / "dvc.lock").read_text())
    assert lock["stages"]["sample@cvae"]["params"]["params.yaml"]["sample"]["per_class"] == 2
    assert run_tool("git", "status", "--porcelain", "--untracked-files=no", cwd=committed).stdout == ""
    assert "synthdata-v1" in run_tool("git", "tag", "--list", cwd=committed).stdout

    flow_run_id = state.state_details.flow_run_id
    logs = _flow_logs(flow_run_id)
    assert any("Running stage 'evaluate@cgan'" in m for m in logs)
    assert any("python -m synthdata publish" in m for m in logs)
    with _client() as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["synthdata-run"])))
    markdown = next(a.data for a in artifacts if a.flow_run_id == flow_run_id)
    assert "| cgan |" in markdown and "| cvae |" in markdown
    assert "synthdata-v1" in markdown and "dvc get" in markdown

    again = pipeline(repo=str(committed), return_state=True)  # nothing changed: nothing runs or is released
    assert again.is_completed(), again.message
    assert again.result()["ran"] == [] and again.result()["released"]["released"] is False


def test_flow_refuses_an_unknown_parameter_before_running_anything(committed: Path, prefect_api):
    from flows.pipeline import pipeline

    before = (committed / "params.yaml").read_bytes()
    state = pipeline(params={"sample.per_clas": 2}, repo=str(committed), return_state=True)
    assert state.is_failed()
    assert "unknown key 'sample.per_clas'" in state.message
    assert (committed / "params.yaml").read_bytes() == before


def test_flow_stops_on_a_user_error_without_retrying(committed: Path, prefect_api):
    from flows.pipeline import pipeline

    # valid as a parameter, wrong for this data: only the sample stage can tell
    state = pipeline(
        params={"sample.counts": {"ten": 5}}, release_dataset=False, repo=str(committed), return_state=True
    )
    assert state.is_failed()
    assert "stage sample: bad input or parameters" in state.message and "unknown class 'ten'" in state.message
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with _client() as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
        )
    assert {r.name: r.run_count for r in runs}["sample"] == 1


def _release_after_first_failure(holder: subprocess.Popen, stage: str, done: threading.Event) -> None:
    """Let the lock holder go once ``stage`` has failed once and waits for its retry (AwaitingRetry): the
    first attempt always meets the lock and the retry (>= 2.5 s of backoff later) never does, however slow
    the machine."""
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName

    try:
        while not done.is_set():
            with _client() as client:
                runs = client.read_task_runs(task_run_filter=TaskRunFilter(name=TaskRunFilterName(any_=[stage])))
            if any(r.state is not None and r.state.name == "AwaitingRetry" for r in runs):
                return
            time.sleep(0.1)
    finally:
        holder.stdin.close()  # the holder leaves `with repo.lock` when its stdin closes


def test_flow_retries_a_stage_while_dvc_is_locked(committed: Path, prefect_api):
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from flows.pipeline import pipeline

    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys\nfrom dvc.repo import Repo\nwith Repo('.').lock:\n"
            "    print('locked', flush=True)\n    sys.stdin.read()\n",
        ],
        cwd=committed,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    done = threading.Event()
    watcher = threading.Thread(target=_release_after_first_failure, args=(holder, "prepare", done))
    try:
        assert holder.stdout.readline().strip() == "locked"
        watcher.start()
        state = pipeline(release_dataset=False, repo=str(committed), return_state=True)
    finally:
        done.set()
        if watcher.ident:
            watcher.join(timeout=30)
        if not holder.stdin.closed:
            holder.stdin.close()
        holder.wait(timeout=60)
    assert state.is_completed(), state.message
    with _client() as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
        )
    counts = {r.name: r.run_count for r in runs}
    assert counts["prepare"] == 2 and counts["report"] == 1
    assert any("Unable to acquire lock" in m for m in _flow_logs(state.state_details.flow_run_id))
    assert "up to date" in run_tool("dvc", "status", cwd=committed).stdout


def test_command_line_run_with_the_ephemeral_api(committed: Path, tmp_path: Path):
    """`python -m flows.pipeline` with no server: Prefect's ephemeral API, in its own PREFECT_HOME."""
    env = {**tool_env(), "PREFECT_HOME": str(tmp_path / "prefect-home"), "PREFECT_API_URL": ""}
    other = other_generator(committed)  # a publish-only change: the in-process flow test re-samples
    proc = subprocess.run(
        [sys.executable, "-m", "flows.pipeline", "--no-release", "--set", f"publish.generator={other}"],
        cwd=committed,
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(result["ran"]) == AFTER_PUBLISH and result["released"] is None
    assert json.loads((committed / "data/published/manifest.json").read_text())["generator"] == other
    bad = subprocess.run(
        [sys.executable, "-m", "flows.pipeline", "--set", "gate.max_fid_ratio=-1"],
        cwd=committed,
        capture_output=True,
        text=True,
        env=env,
    )
    # a user's mistake: one line, exit 2, found before Prefect starts, params.yaml untouched
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1, bad.stderr
    assert bad.stderr.startswith("flows.pipeline: error: params:") and "gate.max_fid_ratio" in bad.stderr
    assert "max_fid_ratio: -1" not in (committed / "params.yaml").read_text()
