"""Sharded sampling on a Dask ``LocalCluster`` (2 worker processes, 1 thread each) against local processes: the
same bytes, and a worker killed in the middle of a shard leaves a complete dataset with no duplicate."""

import os
import signal
from pathlib import Path

import distributed
import numpy as np
import pandas as pd
import pytest
import torch

from synthdata import features, memorization, prepare, reference, sample, train
from synthdata.dataset import load_dataset
from synthdata.executors import DASK_ADDRESS_ENV
from synthdata.params import load_params
from tests.conftest import write_params

pytestmark = pytest.mark.e2e
SAMPLE = {"per_class": 60, "shard_size": 25, "workers": 1}  # 600 images in 24 shards


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("shards")
    params = load_params(write_params(tmp, generators=["cgan"], sample=SAMPLE))
    prepare.run(params)
    train.run(params, "cgan", progress=False)
    return tmp


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c:
        yield c


def _files(root: Path) -> dict[str, bytes]:
    """Every file's bytes but ``params.json`` (it records where the run wrote and with how many workers)."""
    files = {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
    return {k: v for k, v in files.items() if k != "params.json"}


def _sample(tmp: Path, out: str, monkeypatch, address: str | None, **over) -> Path:
    params = load_params(write_params(tmp, generators=["cgan"], sample={**SAMPLE, **over}))
    params = params.model_copy(update={"paths": params.paths.model_copy(update={"synthetic": str(tmp / out)})})
    if address:
        monkeypatch.setenv(DASK_ADDRESS_ENV, address)
    else:
        monkeypatch.delenv(DASK_ADDRESS_ENV, raising=False)
    sample.run(params, "cgan", progress=False)
    return tmp / out / "cgan"


def test_two_dask_workers_and_two_local_processes_write_the_bytes_of_one(trained, cluster, monkeypatch):
    one = _files(_sample(trained, "one", monkeypatch, None))
    assert len([f for f in one if f.endswith(".png")]) == 600
    assert _files(_sample(trained, "local2", monkeypatch, None, workers=2)) == one
    assert _files(_sample(trained, "dask", monkeypatch, cluster.scheduler_address)) == one


def test_features_of_a_dataset_are_the_same_bytes_from_any_executor(trained, cluster, monkeypatch):
    """``evaluate``'s feature shards: kept rows, merged moments and nearest train neighbours are identical from 1
    or 2 local processes and from Dask, and equal one pass over the loaded dataset."""
    root = _sample(trained, "featured", monkeypatch, None)
    ev = {"batch_size": 40, "shard_size": 90}  # 600 rows in 5 chunks of 120 (rounded up to whole batches)
    params = load_params(write_params(trained, generators=["cgan"], sample=SAMPLE, evaluate=ev))
    reference.run(params)
    extractor = features.build(params, torch.device("cpu"))
    files = pd.read_parquet(root / "metadata.parquet")["file_name"].tolist()
    keep = np.array([0, 7, 119, 120, 359, 599])
    runs = []
    for workers, address in ((1, None), (2, None), (1, cluster.scheduler_address)):
        if address:
            monkeypatch.setenv(DASK_ADDRESS_ENV, address)
        p = params.model_copy(update={"evaluate": params.evaluate.model_copy(update={"workers": workers})})
        kept, moments, near = features.of_dataset(extractor, p, root, files, keep, "cpu", neighbours=True)
        neighbours = [a.tobytes() for space in sorted(near) for a in near[space]]
        runs.append((kept.tobytes(), moments.n, moments.mean.tobytes(), moments.scatter.tobytes(), *neighbours))
    assert runs[1] == runs[0] and runs[2] == runs[0]
    images = load_dataset(root).images
    whole = extractor(images)
    assert np.array_equal(kept, whole[keep])
    train = load_dataset(trained / "data/prepared/train").images
    want = memorization.nearest(memorization.flat(images), memorization.flat(train))
    assert np.array_equal(near["pixels"][0], want[0]) and np.array_equal(near["pixels"][1], want[1])
    assert moments.n == 600
    np.testing.assert_allclose(moments.stats().sigma, np.cov(whole, rowvar=False), rtol=1e-9, atol=1e-12)


class KillOnce(distributed.WorkerPlugin):
    """A worker plugin: the first worker to start its 3rd shard is killed (SIGKILL) in the middle of it, once."""

    def __init__(self, marker: str):
        self.marker, self.started = marker, 0

    def setup(self, worker):
        self.worker = worker

    def transition(self, key, start, finish, **kwargs):
        if finish == "executing" and str(key).startswith("make_shard"):
            self.started += 1
            if self.started == 3 and not os.path.exists(self.marker):
                Path(self.marker).write_text(str(os.getpid()))
                os.kill(os.getpid(), signal.SIGKILL)


def test_a_worker_killed_mid_shard_leaves_a_complete_dataset_without_duplicates(trained, cluster, monkeypatch):
    marker = trained / "killed.pid"
    with distributed.Client(cluster.scheduler_address) as client:
        client.register_plugin(KillOnce(str(marker)), name="kill-once")
        try:
            root = _sample(trained, "killed", monkeypatch, cluster.scheduler_address)
        finally:
            client.unregister_worker_plugin("kill-once")
    assert marker.is_file()  # a worker did die in the middle of a shard
    meta = pd.read_parquet(root / "metadata.parquet")
    assert len(meta) == 600 and meta["file_name"].is_unique and meta["seed"].is_unique
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*.png")) == sorted(meta["file_name"])
    if not (trained / "one").is_dir():  # run alone
        _sample(trained, "one", monkeypatch, None)
    assert _files(root) == _files(trained / "one" / "cgan")
