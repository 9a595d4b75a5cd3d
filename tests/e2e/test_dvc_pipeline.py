"""End to end in a throw-away git + DVC copy of this repository, with real DVC and tiny settings:
``dvc repro``, a no-op repro, a changed parameter re-running only what depends on it, ``dvc exp run -S``,
metrics and plots, release to the default DVC remote, ``dvc get`` from another folder into ImageFolder and
pandas, and a failed release that leaves the previous version intact."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torchvision
import yaml

from synthdata.publish import dataset_id
from tests.conftest import AFTER_PUBLISH, other_generator, ran_stages, run_tool

pytestmark = pytest.mark.e2e

ALL_STAGES = {
    "prepare",
    "filter",
    "reference",
    "train@cgan",
    "train@cvae",
    "sample@cgan",
    "sample@cvae",
    "evaluate@cgan",
    "evaluate@cvae",
    "publish",
    "report",
}
AFTER_SAMPLE = {"sample@cgan", "sample@cvae", "evaluate@cgan", "evaluate@cvae", "publish", "report"}


def _ok(proc) -> str:
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:])
    return proc.stdout


def _set_param(root: Path, section: str, key: str, value) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    params[section][key] = value
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def test_repro_runs_everything_then_nothing_then_only_what_changed(built_repo: Path, repo: Path):
    assert ran_stages((built_repo.parent / "first-repro.txt").read_text()) == ALL_STAGES
    assert "up to date" in _ok(run_tool("dvc", "status", cwd=repo))
    assert ran_stages(_ok(run_tool("dvc", "repro", cwd=repo))) == set()

    _set_param(repo, "sample", "seed", 123)
    assert ran_stages(_ok(run_tool("dvc", "repro", cwd=repo))) == AFTER_SAMPLE
    assert "up to date" in _ok(run_tool("dvc", "status", cwd=repo))
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    assert lock["stages"]["sample@cgan"]["params"]["params.yaml"]["sample"]["seed"] == 123

    other = other_generator(repo)
    _set_param(repo, "publish", "generator", other)  # only publish and report depend on it
    assert ran_stages(_ok(run_tool("dvc", "repro", cwd=repo))) == AFTER_PUBLISH
    assert json.loads((repo / "data/published/manifest.json").read_text())["generator"] == other
    # publish hard-links the augmented images (DVC then relinks them by its cache type); the card it
    # writes replaces its link, never writes through it into the augmented dataset
    assert "Published by synthdata" in (repo / "data/published/dataset/README.md").read_text()
    assert "Published by synthdata" not in (repo / f"data/augmented/{other}/README.md").read_text()
    assert "up to date" in _ok(run_tool("dvc", "status", cwd=repo))


def test_metrics_plots_and_report(repo: Path):
    metrics = json.loads(_ok(run_tool("dvc", "metrics", "show", "--json", cwd=repo)))
    files = next(iter(metrics.values()))["data"]  # keyed by revision ("" = workspace)
    for name in ("cgan", "cvae"):
        assert files[f"data/evaluation/{name}/metrics.json"]["data"]["fid"] > 0
    plots = json.loads(_ok(run_tool("dvc", "plots", "show", "--json", cwd=repo)))
    assert not plots.get("errors")
    assert {
        "data/models/cgan.losses/loss_g.csv",
        "data/models/cvae.losses/kl.csv",
        "data/evaluation/cgan/samples.png",
        "data/evaluation/cvae/accuracy.csv",
    } <= set(plots["data"])
    report = (repo / "data/report/report.md").read_text()
    assert "## Verdict" in report and "| cgan |" in report and "| cvae |" in report
    for line in report.splitlines():  # every picture the report shows is beside it
        if line.startswith("!["):
            assert (repo / "data/report" / line.split("(")[1].rstrip(")")).is_file()


def test_losses_are_plotted_for_every_generator(built_repo: Path):
    """The train stage declares its own loss plots: no generator is named in dvc.yaml, and `dvc plots show`
    draws every loss of every generator in params.yaml."""
    assert "cgan" not in (built_repo / "dvc.yaml").read_text() and "cvae" not in (built_repo / "dvc.yaml").read_text()
    shown = json.loads(_ok(run_tool("dvc", "plots", "show", "--json", cwd=built_repo)))
    assert not shown.get("errors")
    want = {
        f"data/models/{name}.losses/{loss}.csv"
        for name, losses in {"cgan": ("d_fake", "d_real", "loss_d", "loss_g"), "cvae": ("kl", "loss", "recon")}.items()
        for loss in losses
    }
    assert want <= set(shown["data"])


def test_exp_run_set_reruns_what_depends_on_the_parameter(repo: Path):
    _ok(run_tool("git", "add", "-A", cwd=repo))
    _ok(run_tool("git", "commit", "-q", "-m", "built", cwd=repo))
    other = other_generator(repo)  # a publish-only change: re-sampling is covered by the repro test
    out = _ok(run_tool("dvc", "exp", "run", "-S", f"publish.generator={other}", cwd=repo))
    assert ran_stages(out) == AFTER_PUBLISH
    assert yaml.safe_load((repo / "params.yaml").read_text())["publish"]["generator"] == other
    manifest = json.loads((repo / "data/published/manifest.json").read_text())
    per_class = yaml.safe_load((repo / "params.yaml").read_text())["sample"]["per_class"]
    assert manifest["generator"] == other and manifest["synthetic_images"] == per_class * 10


def test_release_then_dvc_get_into_imagefolder_and_pandas(repo: Path, tmp_path: Path):
    _ok(run_tool("git", "add", "-A", cwd=repo))
    _ok(run_tool("git", "commit", "-q", "-m", "built", cwd=repo))
    released = json.loads(_ok(run_tool("synthdata", "release", cwd=repo)).splitlines()[-1])
    assert released["version"] == "synthdata-v1" and released["released"]
    assert "synthdata-v1" in _ok(run_tool("git", "tag", "--list", cwd=repo)).split()
    table = pd.read_csv(repo / "published.csv")
    assert list(table["version"]) == ["synthdata-v1"]
    assert _ok(run_tool("git", "status", "--porcelain", "--untracked-files=no", cwd=repo)) == ""

    again = json.loads(_ok(run_tool("synthdata", "release", cwd=repo)).splitlines()[-1])
    assert again == {**again, "version": "synthdata-v1", "released": False}

    consumer = tmp_path / "consumer"
    consumer.mkdir()
    _ok(run_tool("dvc", "get", str(repo), "data/published/dataset", "--rev", "synthdata-v1", "-o", "got", cwd=consumer))
    manifest = json.loads((repo / "data/published/manifest.json").read_text())
    got = consumer / "got"
    assert dataset_id(got) == manifest["dataset_id"] == released["dataset_id"]
    images = torchvision.datasets.ImageFolder(str(got))
    assert len(images) == manifest["images"] and images.classes == manifest["classes"]
    meta = pd.read_parquet(got / "metadata.parquet")
    assert len(meta) == manifest["images"]
    assert (meta["source"] == "synthetic").sum() == manifest["synthetic_images"]
    assert set(meta.loc[meta["source"] == "synthetic", "checkpoint_sha256"]) == set(manifest["checkpoint_sha256"])


def test_failed_release_keeps_the_previous_version(repo: Path, tmp_path: Path):
    _ok(run_tool("git", "add", "-A", cwd=repo))
    _ok(run_tool("git", "commit", "-q", "-m", "built", cwd=repo))
    v1 = json.loads(_ok(run_tool("synthdata", "release", cwd=repo)).splitlines()[-1])
    head = _ok(run_tool("git", "rev-parse", "HEAD", cwd=repo))
    table = (repo / "published.csv").read_bytes()

    _set_param(repo, "publish", "generator", other_generator(repo))  # a new dataset to release
    assert ran_stages(_ok(run_tool("dvc", "repro", cwd=repo))) == AFTER_PUBLISH
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the remote's folder should be")
    _ok(run_tool("dvc", "remote", "modify", "--local", "storage", "url", str(blocker / "store"), cwd=repo))
    failed = run_tool("synthdata", "release", cwd=repo)
    assert failed.returncode == 2
    assert "nothing was released" in failed.stderr and len(failed.stderr.strip().splitlines()) == 1
    assert "Traceback" not in failed.stderr
    assert _ok(run_tool("git", "rev-parse", "HEAD", cwd=repo)) == head
    assert _ok(run_tool("git", "tag", "--list", cwd=repo)).split() == ["synthdata-v1"]
    assert (repo / "published.csv").read_bytes() == table

    (repo / ".dvc/config.local").unlink()
    consumer = tmp_path / "consumer"
    consumer.mkdir()
    _ok(run_tool("dvc", "get", str(repo), "data/published/dataset", "--rev", "synthdata-v1", "-o", "v1", cwd=consumer))
    assert dataset_id(consumer / "v1") == v1["dataset_id"]

    v2 = json.loads(_ok(run_tool("synthdata", "release", cwd=repo)).splitlines()[-1])
    assert v2["version"] == "synthdata-v2" and v2["dataset_id"] != v1["dataset_id"]
    assert list(pd.read_csv(repo / "published.csv")["version"]) == ["synthdata-v1", "synthdata-v2"]


def test_release_refuses_a_stale_or_dirty_repository(repo: Path):
    _ok(run_tool("git", "add", "-A", cwd=repo))
    _ok(run_tool("git", "commit", "-q", "-m", "built", cwd=repo))
    _set_param(repo, "sample", "seed", 5)
    stale = run_tool("synthdata", "release", cwd=repo)
    assert stale.returncode == 2 and "run 'dvc repro' first" in stale.stderr
    _set_param(repo, "sample", "seed", 7)  # back to what dvc.lock says
    with open(repo / "README.md", "a") as f:
        f.write("\nan uncommitted change\n")
    dirty = run_tool("synthdata", "release", cwd=repo)
    assert dirty.returncode == 2 and "uncommitted changes to README.md" in dirty.stderr
    assert _ok(run_tool("git", "tag", "--list", cwd=repo)) == ""


def test_publish_failure_keeps_the_staged_dataset(repo: Path):
    _set_param(repo, "publish", "generator", "cgan")
    manifest = (repo / "data/published/manifest.json").read_bytes()
    shutil.rmtree(repo / "data/augmented/cgan/3")  # files the metadata lists are gone
    proc = run_tool("synthdata", "publish", cwd=repo)
    assert proc.returncode == 2 and "missing" in proc.stderr and "Traceback" not in proc.stderr
    assert (repo / "data/published/manifest.json").read_bytes() == manifest
    assert (repo / "data/published/dataset/3").is_dir()


def test_release_killed_at_its_last_step_leaves_no_version_without_a_tag(repo: Path):
    """Killed at the ref update (the moment an older release had committed but not tagged): the branch and
    the tags are as before, and the next release makes the version whole."""
    _ok(run_tool("git", "add", "-A", cwd=repo))
    _ok(run_tool("git", "commit", "-q", "-m", "built", cwd=repo))
    head = _ok(run_tool("git", "rev-parse", "HEAD", cwd=repo))
    # what interrupted stages leave beside their outputs, and every stage's lock file, are not outputs
    stale = repo / "data/augmented/.cgan.tmp-1-deadbeef"
    stale.mkdir()
    (stale / "half.png").write_bytes(b"half-written")
    assert list((repo / "data").rglob(".*.lock"))
    assert "up to date" in _ok(run_tool("dvc", "status", cwd=repo)).lower()

    hook = repo / ".git/hooks/reference-transaction"
    hook.write_text('#!/bin/sh\nif [ "$1" = prepared ]; then kill -9 "$(cut -d" " -f4 /proc/$PPID/stat)"; exit 1; fi\n')
    hook.chmod(0o755)
    killed = run_tool("synthdata", "release", cwd=repo)
    assert killed.returncode == -9, killed.stderr
    assert _ok(run_tool("git", "rev-parse", "HEAD", cwd=repo)) == head
    assert _ok(run_tool("git", "tag", "--list", cwd=repo)) == ""
    assert run_tool("git", "cat-file", "-e", "HEAD:published.csv", cwd=repo).returncode != 0

    hook.unlink()
    done = json.loads(_ok(run_tool("synthdata", "release", cwd=repo)).splitlines()[-1])
    assert done["version"] == "synthdata-v1" and done["released"]
    for rev in ("HEAD", "synthdata-v1"):
        listed = _ok(run_tool("git", "show", f"{rev}:published.csv", cwd=repo))
        assert "synthdata-v1," in listed and "synthdata-v2" not in listed
    assert _ok(run_tool("git", "rev-parse", "synthdata-v1^{commit}", cwd=repo)) == _ok(
        run_tool("git", "rev-parse", "HEAD", cwd=repo)
    )
    assert _ok(run_tool("git", "status", "--porcelain", "--untracked-files=no", cwd=repo)) == ""


def test_a_second_release_at_once_stops_with_one_line(repo: Path):
    from synthdata import locks

    _ok(run_tool("git", "add", "-A", cwd=repo))
    _ok(run_tool("git", "commit", "-q", "-m", "built", cwd=repo))
    head = _ok(run_tool("git", "rev-parse", "HEAD", cwd=repo))
    with locks.hold(writes=[repo / "published.csv"]):  # a release in progress
        second = run_tool("synthdata", "release", cwd=repo)
    assert second.returncode == 75 and "Traceback" not in second.stderr
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and "published.csv is being used by another synthdata run" in lines[0]
    assert _ok(run_tool("git", "rev-parse", "HEAD", cwd=repo)) == head
    assert _ok(run_tool("git", "tag", "--list", cwd=repo)) == ""


def test_editing_sampling_code_makes_sampling_stale(repo: Path):
    """The latent noise lives in synthdata/generators/noise.py (only sampling draws it): changing it must make
    every sample@ stage stale."""
    base = repo / "synthdata/generators/noise.py"
    text = base.read_text()
    marker = "    seeds = torch.as_tensor(seeds).to(torch.int64).reshape(-1, 1)\n"
    assert marker in text
    base.write_text(text.replace(marker, marker + "    seeds = seeds + 0  # an edit to how latent noise is made\n"))
    stale = _ok(run_tool("dvc", "status", "--json", cwd=repo))
    assert {"sample@cgan", "sample@cvae"} <= set(json.loads(stale))
