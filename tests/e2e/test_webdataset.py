"""The WebDataset form (``sample.format: webdataset``) against the ImageFolder form of the same sampling plan,
read by the consumers other teams use: the ``webdataset`` package, Hugging Face ``datasets`` (its
``webdataset`` and ``imagefolder`` loaders), torchvision ``ImageFolder``, pandas; and versioned by DVC."""

import glob
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import torchvision
import webdataset as wds

from synthdata import prepare, sample, train
from synthdata.dataset import load_dataset
from synthdata.params import load_params
from tests.conftest import make_repo, run_tool, write_params

pytestmark = pytest.mark.e2e
SAMPLE = {"per_class": 20, "shard_size": 64}  # 200 images: tars of 64, 64, 64, 8


@pytest.fixture(scope="module")
def forms(tmp_path_factory) -> dict[str, Path]:
    """The synthetic and augmented datasets of one trained cGAN, in both forms."""
    tmp = tmp_path_factory.mktemp("forms")
    out = {}
    for form in ("imagefolder", "webdataset"):
        root = tmp / form
        root.mkdir()
        params = load_params(write_params(root, generators=["cgan"], sample={**SAMPLE, "format": form}))
        if form == "imagefolder":
            prepare.run(params)
            train.run(params, "cgan", progress=False)
        else:
            shutil.copytree(tmp / "imagefolder" / "data" / "prepared", root / "data" / "prepared")
            shutil.copytree(tmp / "imagefolder" / "data" / "models", root / "data" / "models")
        sample.run(params, "cgan", progress=False)
        out[form] = root / "data"
    return out


def test_one_tar_per_shard_with_a_png_cls_and_json_per_image(forms):
    root = forms["webdataset"] / "synthetic" / "cgan"
    tars = sorted(p.name for p in root.glob("*.tar"))
    assert tars == [f"train-{k:06d}.tar" for k in range(4)]
    assert not [p for p in root.iterdir() if p.is_dir()]  # no class folders in this form
    meta = pq.read_table(root / "metadata.parquet").to_pylist()
    with tarfile.open(root / "train-000000.tar") as tar:
        names = tar.getnames()
        first = json.loads(tar.extractfile(names[2]).read())
    keys = [n.rsplit(".", 1)[0] for n in names[::3]]
    assert len(keys) == 64 and all("." not in k for k in keys)
    assert names[:3] == [f"{keys[0]}.png", f"{keys[0]}.cls", f"{keys[0]}.json"]
    row = meta[0]
    assert row["file_name"] == f"train-000000.tar/{keys[0]}.png"
    assert first == {k: v for k, v in row.items() if k != "file_name"}


def test_the_webdataset_package_reads_the_imagefolder_pixels_and_labels(forms):
    folder = load_dataset(forms["imagefolder"] / "synthetic" / "cgan")
    shards = sorted(glob.glob(str(forms["webdataset"] / "synthetic" / "cgan" / "*.tar")))
    rows = list(wds.WebDataset(shards, shardshuffle=False).decode("l8").to_tuple("png", "cls", "json"))
    assert np.array_equal(np.stack([r[0] for r in rows]), folder.images[:, 0].numpy())
    assert [r[1] for r in rows] == folder.labels.tolist()
    assert [r[2]["seed"] for r in rows] == folder.metadata["seed"].tolist()


def test_hugging_face_datasets_loads_both_forms(forms, tmp_path):
    import datasets

    folder = load_dataset(forms["imagefolder"] / "synthetic" / "cgan")
    shards = sorted(glob.glob(str(forms["webdataset"] / "synthetic" / "cgan" / "*.tar")))
    web = datasets.load_dataset("webdataset", data_files={"train": shards}, split="train", cache_dir=str(tmp_path))
    assert web.num_rows == 200
    assert np.array_equal(np.stack([np.asarray(im) for im in web["png"]]), folder.images[:, 0].numpy())
    assert list(web["cls"]) == folder.labels.tolist()
    # the ImageFolder form's metadata.parquet is what the imagefolder loader reads (file_name + columns)
    imf = datasets.load_dataset(
        "imagefolder", data_dir=str(forms["imagefolder"] / "synthetic" / "cgan"), split="train", cache_dir=str(tmp_path)
    )
    assert imf.num_rows == 200 and {"image", "label", "label_id", "seed", "checkpoint_sha256"} <= set(imf.column_names)
    by_seed = {s: (np.asarray(im), lab) for s, im, lab in zip(imf["seed"], imf["image"], imf["label"])}
    for i, seed in enumerate(folder.metadata["seed"]):
        pixels, label = by_seed[seed]
        assert np.array_equal(pixels, folder.images[i, 0].numpy()) and label == folder.class_names[folder.labels[i]]


def test_torchvision_and_synthdata_read_the_same_augmented_dataset_in_both_forms(forms):
    a = load_dataset(forms["imagefolder"] / "augmented" / "cgan")
    b = load_dataset(forms["webdataset"] / "augmented" / "cgan")
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert (b.metadata["source"] == "real").sum() > 0 and b.metadata["file_name"].str.contains(".tar/").all()
    tv = torchvision.datasets.ImageFolder(str(forms["imagefolder"] / "augmented" / "cgan"))
    assert len(tv) == len(b.labels) and sorted(t for _, t in tv.samples) == sorted(b.labels.tolist())


def test_the_tars_are_byte_identical_however_many_workers_make_them(forms, tmp_path):
    root = forms["webdataset"].parent
    params = load_params(root / "params.yaml", overrides={"sample.workers": 1})
    params = params.model_copy(update={"paths": params.paths.model_copy(update={"synthetic": str(tmp_path)})})
    again = params.model_copy(update={"paths": params.paths.model_copy(update={"augmented": str(tmp_path / "a")})})
    sample.run(again, "cgan", progress=False)
    for tar in sorted((forms["webdataset"] / "synthetic" / "cgan").glob("*.tar")):
        assert (tmp_path / "cgan" / tar.name).read_bytes() == tar.read_bytes()


def test_dvc_versions_and_gets_the_sharded_published_dataset(tmp_path):
    """The whole pipeline in the WebDataset form under ``dvc repro``; the published tars pushed to a local
    remote and fetched back with ``dvc get``."""
    root = make_repo(tmp_path / "repo", sample={"per_class": 20, "shard_size": 64, "format": "webdataset"})
    for argv in (
        ["dvc", "repro"],
        ["dvc", "remote", "add", "-d", "local", str(tmp_path / "remote")],
        ["dvc", "push"],
        ["git", "add", "-A"],
        ["git", "commit", "-q", "-m", "webdataset run"],
        ["dvc", "get", str(root), "data/published/dataset", "-o", str(tmp_path / "got")],
    ):
        done = run_tool(*argv, cwd=root)
        assert done.returncode == 0, f"{argv}: {done.stdout[-2000:]} {done.stderr[-2000:]}"
    got = tmp_path / "got"
    tars = sorted(p.name for p in got.glob("*.tar"))
    assert "train-000000.tar" in tars and "train-real-000000.tar" in tars
    assert not [p for p in got.iterdir() if p.is_dir()]
    fetched, local = load_dataset(got), load_dataset(root / "data" / "published" / "dataset")
    assert torch.equal(fetched.images, local.images) and fetched.metadata.equals(local.metadata)


def test_gzipped_shards_hold_the_same_samples_and_are_smaller(forms, tmp_path):
    import datasets

    params = load_params(forms["webdataset"].parent / "params.yaml", overrides={"sample.tar_compression": "gzip"})
    paths = params.paths.model_copy(update={"synthetic": str(tmp_path / "s"), "augmented": str(tmp_path / "a")})
    sample.run(params.model_copy(update={"paths": paths}), "cgan", progress=False)
    plain, gz = forms["webdataset"] / "synthetic" / "cgan", tmp_path / "s" / "cgan"
    shards = sorted(str(p) for p in gz.glob("*.tar.gz"))
    assert [Path(s).name for s in shards] == [f"train-{k:06d}.tar.gz" for k in range(4)]
    assert sum(Path(s).stat().st_size for s in shards) * 4 < sum(p.stat().st_size for p in plain.glob("*.tar"))
    a, b = load_dataset(plain), load_dataset(gz)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    rows = list(wds.WebDataset(shards, shardshuffle=False).decode("l8").to_tuple("png", "cls"))
    assert np.array_equal(np.stack([r[0] for r in rows]), a.images[:, 0].numpy())
    hf = datasets.load_dataset("webdataset", data_files={"train": shards}, split="train", cache_dir=str(tmp_path))
    assert list(hf["cls"]) == a.labels.tolist()
    assert (
        load_dataset(tmp_path / "a" / "cgan").images.shape
        == load_dataset(forms["webdataset"] / "augmented" / "cgan").images.shape
    )
