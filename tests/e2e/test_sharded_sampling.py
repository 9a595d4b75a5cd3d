"""Sharded sampling on a Dask ``LocalCluster`` (2 worker processes, 1 thread each) against local processes: the
same bytes, and a worker killed in the middle of a shard leaves a complete dataset with no duplicate."""

import os
import signal
from pathlib import Path

import distributed
import pandas as pd
import pytest

from synthdata import prepare, sample, train
from synthdata.params import load_params
from synthdata.shards import DASK_ADDRESS_ENV
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
