"""The synthdata pipeline as a Prefect flow: Prefect decides when and where it runs, DVC what is built.

Each task runs one stage of ``dvc.yaml`` with ``dvc repro --single-item <stage>``: DVC runs the stage's own
command (the same code as ``dvc repro``, never a copy), skips it when nothing it depends on changed, and
writes ``dvc.lock``, so after a flow run ``dvc status`` has nothing to do. Stages run one at a time (they
share one DVC repository lock and every CPU core). Transient failures (a held DVC lock, a crash) are
retried with exponential backoff; a user's mistake (exit code 2) or a failed quality gate (3) is not.

Run once, with Prefect's ephemeral local API (no server to set up)::

    python -m flows.pipeline [--set sample.per_class=100] [--no-release]

Serve a deployment with a cron schedule (needs a Prefect server; see docs/pipeline.md, "Scheduled runs")::

    python -m flows.pipeline --serve --cron "0 3 * * *"

``--set KEY=VALUE`` (or the ``params`` flow parameter, e.g. ``{"sample.per_class": 100}``) overrides
``params.yaml`` the way ``dvc exp run -S`` does: the file itself is changed (validated first, comments
kept), DVC records the values in ``dvc.lock``, and ``synthdata release`` commits both, so what ran is what
is recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.states import Failed
from prefect.tasks import exponential_backoff

PARAMS = "params.yaml"
USER_ERROR = "not retried: "
EXIT_MEANING = {2: "bad input or parameters", 3: "the quality gate failed"}  # synthdata's own exit codes


class StageFailed(RuntimeError):
    """A stage (or the release) exited non-zero for a reason worth retrying."""


def _transient(task, task_run, state) -> bool:  # Prefect retry_condition_fn
    return not (state.message or "").startswith(USER_ERROR)


def _run_logged(root: Path, argv: list[str], what: str) -> tuple[int, list[str]]:
    """Run a command in ``root``, every output line into the Prefect run log; return (exit code, lines)."""
    logger = get_run_logger()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(argv, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip()
        if line:
            lines.append(line)
            logger.info("%s | %s", what, line)
    return proc.wait(), lines


def _cmd_exit(lines: list[str]) -> int | None:
    """The exit code of the stage command, from DVC's 'failed to run: ..., exited with N'."""
    for line in reversed(lines):
        if m := re.search(r"exited with (-?\d+)", line):
            return int(m.group(1))
    return None


def _failure(what: str, code: int | None, lines: list[str]):
    errors = [ln for ln in lines if "error:" in ln.lower() or ln.startswith("ERROR")]
    detail = errors[0] if errors else (lines[-1] if lines else "no output")
    if code in EXIT_MEANING:
        return Failed(message=f"{USER_ERROR}{what}: {EXIT_MEANING[code]}: {detail}")
    raise StageFailed(f"{what} failed: {detail}")


@task(name="apply-params", cache_policy=NO_CACHE)
def apply_params(root: Path, overrides: dict[str, Any]):
    """Set dotted keys of params.yaml (validated first) with DVC's own comment-keeping YAML writer."""
    from dvc.utils.serialize import modify_yaml

    from synthdata.errors import SynthdataError
    from synthdata.params import load_params

    if not overrides:
        return []
    items = [f"{key}={json.dumps(value)}" for key, value in overrides.items()]
    fd, tmp = tempfile.mkstemp(prefix=".params-", suffix=".yaml", dir=root)
    os.close(fd)
    try:
        load_params(root / PARAMS, overrides=overrides)  # an unknown key or a bad value stops here, named
        Path(tmp).write_bytes((root / PARAMS).read_bytes())
        with modify_yaml(tmp) as data:
            for dotted, value in overrides.items():
                *parents, leaf = dotted.split(".")
                node = data
                for part in parents:
                    node = node[part]
                node[leaf] = value
        load_params(tmp)
        os.replace(tmp, root / PARAMS)
    except SynthdataError as exc:  # params.yaml is untouched
        return Failed(message=f"{USER_ERROR}params: {exc}")
    finally:
        Path(tmp).unlink(missing_ok=True)
    get_run_logger().info("params.yaml overrides applied (recorded by DVC in dvc.lock): %s", ", ".join(items))
    return items


def stage_groups(root: Path) -> list[str]:
    """Stage names of dvc.yaml in dependency order; a foreach stage's items form one group (``train``)."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        graph = repo.index.graph  # edges point from a stage to the stages it depends on
        order = {s: i for i, s in enumerate(repo.index.stages)}
        depth: dict = {}

        def level(stage) -> int:
            if stage not in depth:
                depth[stage] = 1 + max((level(d) for d in graph.successors(stage)), default=-1)
            return depth[stage]

        groups: dict[str, tuple[int, int]] = {}
        for stage in repo.index.stages:
            if not stage.is_data_source:
                name = stage.name.split("@")[0]
                d, first = groups.get(name, (0, order[stage]))
                groups[name] = (max(d, level(stage)), min(first, order[stage]))
    return sorted(groups, key=lambda g: groups[g])


# stages and the release: retried with exponential backoff, unless the failure is the user's (exit 2 or 3)
RETRIED = dict(
    retries=2,
    retry_delay_seconds=exponential_backoff(backoff_factor=5),
    retry_jitter_factor=0.5,
    retry_condition_fn=_transient,
    cache_policy=NO_CACHE,
)


@task(name="dvc-stage", task_run_name="{stage}", **RETRIED)
def run_stage(root: Path, stage: str) -> dict:
    code, lines = _run_logged(root, [sys.executable, "-m", "dvc", "repro", "--single-item", stage], stage)
    if code:
        return _failure(f"stage {stage}", _cmd_exit(lines), lines)
    ran = [m.group(1) for ln in lines if (m := re.match(r"Running stage '([^']+)'", ln))]
    return {"stage": stage, "ran": ran}


@task(name="release", **RETRIED)
def release(root: Path) -> dict:
    code, lines = _run_logged(root, [sys.executable, "-m", "synthdata", "release"], "release")
    if code in (2, 3):
        return _failure("release", code, lines)
    if code:
        raise StageFailed(f"release failed (exit {code}): {lines[-1] if lines else 'no output'}")
    return json.loads(next(ln for ln in reversed(lines) if ln.startswith("{")))


def _rooted(root: Path):
    """params.yaml of ``root`` with every path made absolute (the flow may run from another folder)."""
    from synthdata.params import load_params

    params = load_params(root / PARAMS)
    paths = {k: str(root / v) for k, v in params.paths.model_dump().items()}
    return params.model_copy(update={"paths": params.paths.model_copy(update=paths)})


def _remote_url(root: Path) -> str:
    proc = subprocess.run([sys.executable, "-m", "dvc", "remote", "list"], cwd=root, capture_output=True, text=True)
    return proc.stdout.strip().replace("\t", " ") or "(no DVC remote)"


def run_summary(root: Path, overrides: list[str], ran: list[str], released: dict | None, failure: str | None) -> str:
    """The run's markdown artifact: overrides, stages run, metrics table, verdict, where the dataset is."""
    from synthdata import manifest, report

    parts = [
        "# synthdata run",
        "",
        f"Repository: `{root.name}`; overrides: "
        + (", ".join(f"`{o}`" for o in overrides) or "none")
        + "; stages run: "
        + (", ".join(ran) or "none (everything was up to date)")
        + ".",
        "",
    ]
    if failure:
        parts += [f"**Failed:** {failure}", ""]
    try:
        params = _rooted(root)
        parts += [
            report.metrics_table(manifest.candidates(params)),
            "",
            report.published_summary(manifest.read_manifest(params)),
            "",
        ]
        published = f"{params.paths.published}/{manifest.DATASET}"
    except Exception as exc:  # an early failure: no scores yet
        parts += [f"No scores: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", ""]
        return "\n".join(parts)
    if released:
        rel = Path(published).relative_to(root).as_posix()
        parts += [
            f"**Version `{released['version']}`** (dataset id `{released['dataset_id'][:16]}`; "
            f"{'new' if released.get('released') else 'already released'}), in DVC remote "
            f"{_remote_url(root)}. Get it with:",
            "",
            f"    dvc get <repository url> {rel} --rev {released['version']} -o dataset",
            "",
            "then `torchvision.datasets.ImageFolder('dataset')` or `pandas.read_parquet('dataset/metadata.parquet')`.",
            "",
        ]
    else:
        parts += ["Not released in this run.", ""]
    parts.append(f"Report: `{Path(params.paths.report).relative_to(root).as_posix()}/report.md`.")
    return "\n".join(parts)


@flow(name="synthdata-pipeline", log_prints=True)
def pipeline(params: dict[str, Any] | None = None, release_dataset: bool = True, repo: str = ".") -> dict:
    """prepare -> reference/train -> sample -> evaluate -> publish -> report (DVC), then release."""
    root = Path(repo).resolve()
    if not (root / "dvc.yaml").is_file():
        return Failed(message=f"{USER_ERROR}{root} has no dvc.yaml: pass repo=<the synthdata repository>")
    overrides_state = apply_params(root, params or {}, return_state=True)
    if overrides_state.is_failed():
        return Failed(message=overrides_state.message.removeprefix(USER_ERROR))
    overrides = overrides_state.result()
    ran: list[str] = []
    failure = None
    released = None
    for stage in stage_groups(root):
        state = run_stage(root, stage, return_state=True)
        if state.is_failed():
            failure = state.message.removeprefix(USER_ERROR)
            break
        ran += state.result()["ran"]
    if failure is None and release_dataset:
        state = release(root, return_state=True)
        if state.is_failed():
            failure = state.message.removeprefix(USER_ERROR)
        else:
            released = state.result()
    create_markdown_artifact(
        key="synthdata-run",
        markdown=run_summary(root, overrides, ran, released, failure),
        description="synthdata: metrics, gate verdict and the published version",
    )
    if failure:
        return Failed(message=failure)
    return {"overrides": overrides, "ran": ran, "released": released}


def _parse_set(items: list[str]) -> dict[str, Any]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"flows.pipeline: error: --set needs KEY=VALUE, got {item!r}")
        out[key] = yaml.safe_load(value)
    return out


def _precheck(root: Path, overrides: dict[str, Any]) -> str | None:
    """A user's mistake found before Prefect starts (the flow checks again for runs started elsewhere)."""
    from synthdata.errors import SynthdataError
    from synthdata.params import load_params

    if not (root / "dvc.yaml").is_file():
        return f"{root} has no dvc.yaml: pass --repo <the synthdata repository>"
    try:
        load_params(root / PARAMS, overrides=overrides)
    except SynthdataError as exc:
        return f"params: {exc}"
    return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m flows.pipeline", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a params.yaml key for this run (repeatable), like 'dvc exp run -S'",
    )
    p.add_argument("--no-release", action="store_true", help="run the pipeline but do not release a version")
    p.add_argument("--repo", default=".", help="the synthdata repository (default: current folder)")
    p.add_argument("--serve", action="store_true", help="serve a scheduled deployment (needs a Prefect server)")
    p.add_argument("--cron", default="0 3 * * *", help="schedule of the served deployment (default: 03:00 daily)")
    p.add_argument("--name", default="synthdata-nightly", help="name of the served deployment")
    args = p.parse_args(argv)
    parameters = {
        "params": _parse_set(args.set),
        "release_dataset": not args.no_release,
        "repo": str(Path(args.repo).resolve()),
    }
    if problem := _precheck(Path(parameters["repo"]), parameters["params"]):
        print(f"flows.pipeline: error: {problem}", file=sys.stderr)
        return 2
    if args.serve:
        pipeline.serve(name=args.name, cron=args.cron, parameters=parameters, limit=1)
        return 0
    state = pipeline(**parameters, return_state=True)
    if state.is_failed():
        print(f"flows.pipeline: error: {state.message}", file=sys.stderr)
        return 1
    result = state.result()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
