"""Checkpoint selection on the real val split (issue 20): trained with the test split removed, scored every 2
steps, the best step's snapshot is what ``sample`` uses; the curve is a plot, the step is in the summary; a run
killed and resumed selects the same bytes; the training trajectory is the same as without selection. Several
training seeds keep the best on val; a mixture draws every class from each seed's generator with per-image
provenance and byte-identical regeneration."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from synthdata import checkpoint, prepare, reference, sample, train
from synthdata.fsutil import sha256_file
from synthdata.params import load_params
from synthdata.runtime import pick_device
from synthdata.selection import ValScorer
from tests.conftest import TINY_TRAIN, write_params

pytestmark = pytest.mark.e2e
SELECT = {"select_every": 2, "select_images": 200, "select_metric": "val_fid_ratio"}  # the fast criterion


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("select")
    params = load_params(write_params(tmp, generators=["cgan"]))
    prepare.run(params)
    reference.run(params)
    shutil.rmtree(tmp / "data/prepared/test")  # training and selection never open it
    return tmp


def _params(tmp: Path, models: str, **train_over):
    params = load_params(write_params(tmp, generators=["cgan"], train={**TINY_TRAIN, **train_over}))
    return params.model_copy(update={"paths": params.paths.model_copy(update={"models": str(tmp / models)})})


def _curve(folder: Path) -> list[dict]:
    with open(folder / checkpoint.SELECTION, newline="") as f:
        return list(csv.DictReader(f))


def test_the_best_step_on_val_is_the_generator_sample_uses(project):
    params = _params(project, "models", **SELECT)
    train.run(params, "cgan", progress=False)
    out = project / "models/cgan"
    curve = _curve(out)
    assert [int(r["step"]) for r in curve] == [2, 4, 6]
    summary = json.loads((out / "summary.json").read_text())
    scores = [float(r["val_fid_ratio"]) for r in curve]
    best = min(range(3), key=lambda i: scores[i])
    assert summary["selected_step"] == 2 * (best + 1) and summary["selected_metric"] == "val_fid_ratio"
    assert checkpoint.read(out / checkpoint.SELECTED)[0]["step"] == summary["selected_step"]
    # the snapshot is that step's: scoring it again gives the recorded score, bit for bit
    scorer = ValScorer(params, "cgan", pick_device("cpu"))
    again = scorer(checkpoint.load_generator(out))
    assert repr(again["val_fid_ratio"]) == curve[best]["val_fid_ratio"]
    plots = checkpoint.loss_plots(params.paths.models, "cgan")
    assert (plots / "val_fid_ratio.csv").is_file() and (plots / "val_class_fid_ratio_max.csv").is_file()
    # sample reads the selected snapshot, and says so per image
    sample.run(params, "cgan", progress=False)
    meta = pd.read_parquet(Path(params.paths.synthetic) / "cgan/metadata.parquet")
    assert set(meta["checkpoint_sha256"]) == {sha256_file(out / checkpoint.SELECTED)}

    # selection changes nothing of the training itself
    plain = _params(project, "plain")
    train.run(plain, "cgan", progress=False)
    a, b = checkpoint.read(out)[1]["model"], checkpoint.read(project / "plain/cgan")[1]["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not (project / "plain/cgan" / checkpoint.SELECTED).exists()


def test_a_killed_selecting_run_resumes_to_the_same_selection(project):
    whole = _params(project, "whole", **SELECT, checkpoint_every=3)
    train.run(whole, "cgan", progress=False)
    split = _params(project, "split", **SELECT, checkpoint_every=3)

    def stop_at_5(step):
        if step == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train.run(split, "cgan", progress=False, on_step=stop_at_5)
    assert [int(r["step"]) for r in _curve(project / "split/cgan.partial")] == [2]  # saved with step 3
    assert train.run(split, "cgan", progress=False)["resumed_from"] == 3
    for f in (checkpoint.SELECTED, checkpoint.SELECTION, "summary.json"):
        assert (project / "whole/cgan" / f).read_bytes() == (project / "split/cgan" / f).read_bytes(), f


def test_changing_the_selection_starts_over(project):
    params = _params(project, "change", **SELECT)
    train.run(params, "cgan", progress=False)
    again = _params(project, "change", **{**SELECT, "select_every": 3})
    summary = train.run(again, "cgan", progress=False)
    assert summary["resumed_from"] == 0
    assert [int(r["step"]) for r in _curve(project / "change/cgan")] == [3, 6]


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_several_seeds_keep_the_best_on_val_and_a_rerun_trains_nothing(project):
    params = _params(project, "seeds", **{**SELECT, "select_every": 3}, seeds=[0, 1])
    summary = train.run(params, "cgan", progress=False)
    out = project / "seeds/cgan"
    table = json.loads((project / "seeds/cgan.selection.json").read_text())
    assert table["seeds"] == [0, 1] and table["metric"] == "val_fid_ratio"
    scores = table["scores"]
    assert table["winner"] == [0, 1][scores.index(min(scores))] == summary["selected_seed"]
    assert table["spread"] == pytest.approx(max(scores) - min(scores))
    winner = out / f"seed-{table['winner']}"
    assert (out / checkpoint.SELECTED).read_bytes() == (winner / checkpoint.SELECTED).read_bytes()
    assert json.loads((out / "seeds.json").read_text()) == table
    plots = checkpoint.loss_plots(params.paths.models, "cgan")
    assert {"seed-0-val_fid_ratio.csv", "seed-1-val_fid_ratio.csv"} <= {p.name for p in plots.iterdir()}
    # seed 0's run is the plain run of seed 0; seed 1's is another
    w0, w1 = (checkpoint.read(out / f"seed-{s}")[1]["model"] for s in (0, 1))
    plain = checkpoint.read(project / "plain/cgan")[1]["model"] if (project / "plain/cgan").exists() else None
    assert plain is None or all(torch.equal(w0[k], plain[k]) for k in w0)
    assert not all(torch.equal(w0[k], w1[k]) for k in w0)
    before = _tree(out)
    again = train.run(params, "cgan", progress=False)
    assert again["selected_seed"] == summary["selected_seed"] and _tree(out) == before  # resumed, nothing trained
    sample.run(params, "cgan", progress=False)
    meta = pd.read_parquet(Path(params.paths.synthetic) / "cgan/metadata.parquet")
    assert set(meta["checkpoint_sha256"]) == {sha256_file(out / checkpoint.SELECTED)}


def test_a_single_run_records_its_selection_too(project):
    params = _params(project, "single", **SELECT)
    train.run(params, "cgan", progress=False)
    table = json.loads((project / "single/cgan.selection.json").read_text())
    assert table["seeds"] == [0] and table["winner"] == 0 and table["spread"] == 0.0
    assert table["steps"] == [json.loads((project / "single/cgan/summary.json").read_text())["selected_step"]]


def test_a_mixture_draws_every_class_from_each_seed_and_keeps_per_image_provenance(project):
    from synthdata.dataset import load_dataset

    over = {**SELECT, "select_every": 3, "seeds": [0, 1]}
    raw = write_params(project, generators=["cgan"], train={**TINY_TRAIN, **over})
    params = load_params(raw, {"paths.models": str(project / "mix-models"), "sample.mixture": True})
    params = params.model_copy(update={"sample": params.sample.model_copy(update={"per_class": 5, "shard_size": 7})})
    train.run(params, "cgan", progress=False)
    sample.run(params, "cgan", progress=False)
    syn = Path(params.paths.synthetic) / "cgan"
    meta = pd.read_parquet(syn / "metadata.parquet")
    models = project / "mix-models/cgan"
    shas = {s: sha256_file(models / f"seed-{s}" / checkpoint.SELECTED) for s in (0, 1)}
    assert set(meta["checkpoint_sha256"]) == set(shas.values()) and len(meta) == 50
    per_class = meta.groupby("label_id")["checkpoint_sha256"].nunique()
    assert (per_class == 2).all()  # every class from both seeds (weights 1 / val score, both finite)
    assert "mixture of the generators of training seeds" in (syn / "README.md").read_text()
    # every image is remade from its row's checkpoint, label and seed, bit for bit
    images = load_dataset(syn).images
    by_sha = {sha: checkpoint.load_generator(models / f"seed-{s}" / checkpoint.SELECTED) for s, sha in shas.items()}
    for i in (0, 1, 4, 17, 49):
        row = meta.iloc[i]
        again = by_sha[row["checkpoint_sha256"]].generate_from_seeds([int(row["label_id"])], [int(row["seed"])])
        assert torch.equal(again[0], images[i])
    # the same bytes from 2 processes and another shard size
    first = _tree(syn)
    two = params.model_copy(update={"sample": params.sample.model_copy(update={"workers": 2, "shard_size": 3})})
    sample.run(two, "cgan", progress=False)
    assert {k: v for k, v in _tree(syn).items() if k != "params.json"} == {
        k: v for k, v in first.items() if k != "params.json"
    }


def test_a_mixture_needs_several_seeds(project):
    from synthdata.errors import SynthdataError

    with pytest.raises(SynthdataError, match="sample.mixture draws from the generators of several train.seeds"):
        load_params(write_params(project, generators=["cgan"], sample={"mixture": True}))


def test_the_train_on_synthetic_criterion_scores_on_val_and_selects_by_it(project):
    params = _params(project, "tstr", **{**SELECT, "select_metric": "val_tstr_error"}, select_tstr_steps=20)
    train.run(params, "cgan", progress=False)
    curve = _curve(project / "tstr/cgan")
    errors = [float(r["val_tstr_error"]) for r in curve]
    assert all(0.0 <= e <= 1.0 for e in errors) and len(errors) == 3
    summary = json.loads((project / "tstr/cgan/summary.json").read_text())
    assert summary["selected_step"] == [2, 4, 6][errors.index(min(errors))]
    # the classifier that scores is part of the criterion: another budget starts the run over
    again = _params(project, "tstr", **{**SELECT, "select_metric": "val_tstr_error"}, select_tstr_steps=30)
    assert train.run(again, "cgan", progress=False)["resumed_from"] == 0
