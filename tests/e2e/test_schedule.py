"""The scheduled path against a real ``prefect server start`` on loopback (Prefect refuses to schedule
against its ephemeral API): ``prefect deploy`` of prefect.yaml for a process work pool registers the cron
deployment, and ``python -m flows.pipeline --serve`` serves one whose scheduled runs the server creates;
a run of the served deployment executes the DVC stages and leaves ``dvc status`` clean."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import other_generator, run_tool, tool_env

pytestmark = pytest.mark.e2e


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(what: str, check, timeout: float, procs=()):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in procs:
            assert proc.poll() is None, f"{what}: a process ended early with {proc.returncode}"
        value = check()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def server(tmp_path: Path):
    port = _free_port()
    env = {
        **tool_env(),
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_API_URL": "",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_UI_ENABLED": "false",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    api = f"http://127.0.0.1:{port}/api"

    def healthy():
        try:
            return httpx.get(f"{api}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        _wait("the Prefect server", healthy, 120, [proc])
        yield api, {**env, "PREFECT_API_URL": api, "PREFECT_RUNNER_POLL_FREQUENCY": "2"}
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def _deployment(api: str, name: str) -> dict | None:
    r = httpx.get(f"{api}/deployments/name/synthdata-pipeline/{name}", timeout=10)
    return r.json() if r.status_code == 200 else None


def _scheduled_runs(api: str, deployment_id: str) -> list[dict]:
    body = {"deployments": {"id": {"any_": [deployment_id]}}, "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}}}
    return httpx.post(f"{api}/flow_runs/filter", json=body, timeout=10).json()


def test_deploy_and_serve_on_a_cron_schedule(repo: Path, server):
    api, env = server

    def prefect(*argv: str) -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "prefect", "--no-prompt", *argv], cwd=repo, env=env, capture_output=True, text=True
        )
        assert proc.returncode == 0, (argv, proc.stdout[-2000:], proc.stderr[-2000:])
        return proc.stdout

    # 1. prefect.yaml for a process work pool
    prefect("work-pool", "create", "synthdata", "--type", "process")
    prefect("variable", "set", "synthdata_repo", str(repo))
    prefect("deploy", "--all")
    deployed = _deployment(api, "synthdata-nightly")
    assert deployed and deployed["work_pool_name"] == "synthdata"
    assert [s["schedule"]["cron"] for s in deployed["schedules"]] == ["0 3 * * *"]
    runs = _wait("scheduled runs of the work-pool deployment", lambda: _scheduled_runs(api, deployed["id"]), 60)
    assert all(r["expected_start_time"][11:16] == "03:00" for r in runs)

    # 2. the served deployment: scheduled by the server, and run by the serving process
    other = other_generator(repo)  # a publish-only change: only publish and report re-run
    serve = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flows.pipeline",
            "--serve",
            "--name",
            "served",
            "--cron",
            "30 4 * * *",
            "--no-release",
            "--set",
            f"publish.generator={other}",
        ],
        cwd=repo,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        served = _wait("the served deployment", lambda: _deployment(api, "served"), 120, [serve])
        assert [s["schedule"]["cron"] for s in served["schedules"]] == ["30 4 * * *"]
        assert served["parameters"]["params"] == {"publish.generator": other}
        _wait("scheduled runs of the served deployment", lambda: _scheduled_runs(api, served["id"]), 60, [serve])
        run = httpx.post(f"{api}/deployments/{served['id']}/create_flow_run", json={}, timeout=10).json()

        def finished():
            state = httpx.get(f"{api}/flow_runs/{run['id']}", timeout=10).json()["state"]
            return state if state["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") else None

        state = _wait("the triggered run", finished, 400, [serve])
        assert state["type"] == "COMPLETED", state
    finally:
        serve.send_signal(signal.SIGINT)
        try:
            serve.wait(timeout=30)
        except subprocess.TimeoutExpired:
            serve.kill()
    assert yaml.safe_load((repo / "params.yaml").read_text())["publish"]["generator"] == other
    assert "up to date" in run_tool("dvc", "status", cwd=repo).stdout
    assert os.path.isfile(repo / "data/report/report.md")
    assert json.loads((repo / "data/published/manifest.json").read_text())["generator"] == other
