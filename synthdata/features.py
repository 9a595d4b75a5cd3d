"""Feature extractors for FID, KID and PRDC, registered by name and chosen by
``evaluate.feature_extractor``. Each maps uint8 images (N, C, H, W) to float64 features (N, D).

- ``domain``: the embedding of a small CNN trained on the real train split by the ``reference`` stage
  (no download needed; its own real-test accuracy is recorded beside it). Its FIDs are comparable only
  with FIDs of the same extractor file (its sha256 is reported with every metric).
- ``inception``: the Inception-v3 pool3 features of published FIDs (TF 2015-12-05 weights, as in
  torch-fidelity, which implements the network and the TF1-compatible resize). No weights are downloaded:
  ``evaluate.inception_weights`` names a local copy of ``weights-inception-2015-12-05-6726825d.pth``.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from synthdata import classifier, executors, memorization
from synthdata.dataset import decode, load_dataset
from synthdata.errors import SynthdataError
from synthdata.fsutil import sha256_file
from synthdata.metrics.fid import Moments
from synthdata.params import Params

DOMAIN_FILE = "domain.pt"
REAL_FILE = "real_features.pt"  # the real train and test splits' features, made once by `reference`
REAL_FORMAT = "synthdata-features/1"
REAL_SPLITS = ("train", "test")
INCEPTION_SHA256_PREFIX = "6726825d"  # torch-fidelity's name for the standard FID weights file

REGISTRY: dict[str, Callable[[Params, torch.device], "Extractor"]] = {}


def register(name: str):
    def wrap(factory):
        REGISTRY[name] = factory
        return factory

    return wrap


class Extractor:
    """``fn`` (a network's feature function) applied batch by batch; ``name``, ``dim`` and the weights'
    ``sha256`` say which features these are."""

    def __init__(
        self,
        net: torch.nn.Module,
        fn: Callable[[torch.Tensor], torch.Tensor],
        batch: int,
        device: torch.device,
        name: str = "",
        dim: int = 0,
        sha256: str = "",
    ):
        self.net, self.fn, self.batch, self.device = net, fn, batch, device
        self.name, self.dim, self.sha256 = name, dim, sha256

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> np.ndarray:
        out = [
            self.fn(images[lo : lo + self.batch].to(self.device)).double().cpu()
            for lo in range(0, len(images), self.batch)
        ]
        return torch.cat(out).numpy() if out else np.zeros((0, self.dim))


@register("domain")
def domain(params: Params, device: torch.device) -> Extractor:
    path = Path(params.paths.reference) / DOMAIN_FILE
    model, info = classifier.load(path, "domain feature extractor", "run 'synthdata reference'")
    model.to(device)
    return Extractor(
        model,
        lambda x: model.features(classifier.SmallCNN.normalize(x)),
        params.evaluate.batch_size,
        device,
        "domain",
        info["feature_dim"],
        sha256_file(path),
    )


@register("inception")
def inception(params: Params, device: torch.device) -> Extractor:
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    weights = params.evaluate.inception_weights
    if not weights:
        raise SynthdataError(
            "evaluate.inception_weights: set it to a local copy of "
            "weights-inception-2015-12-05-6726825d.pth to use feature_extractor: inception"
        )
    path = Path(weights).expanduser()
    if not path.is_file():
        raise SynthdataError(
            f"evaluate.inception_weights: {path} does not exist (download "
            "weights-inception-2015-12-05-6726825d.pth from torch-fidelity's releases)"
        )
    try:  # refuse anything but plain tensors before torch-fidelity unpickles it
        torch.load(path, map_location="cpu", weights_only=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(path))
    except Exception as exc:
        raise SynthdataError(
            f"evaluate.inception_weights: {path} is not an Inception-v3 FID weights file "
            f"({str(exc).splitlines()[0][:120]})"
        ) from None
    sha = sha256_file(path)
    if not sha.startswith(INCEPTION_SHA256_PREFIX):
        warnings.warn(
            f"{path}: sha256 {sha[:8]}... is not the standard FID weights ({INCEPTION_SHA256_PREFIX}...): "
            "FIDs will not be comparable with published ones"
        )
    net.to(device).eval()

    def fn(x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return net(x)[0]

    return Extractor(net, fn, min(params.evaluate.batch_size, 64), device, "inception-v3-pool3", 2048, sha)


def check(params: Params) -> None:
    """Refuse an unregistered ``evaluate.feature_extractor`` (the stages that use one call this first)."""
    name = params.evaluate.feature_extractor
    if name not in REGISTRY:
        raise SynthdataError(
            f"evaluate.feature_extractor: unknown feature extractor {name!r}; choose one of: "
            f"{', '.join(sorted(REGISTRY))}"
        )


def build(params: Params, device: torch.device, reference: str | Path | None = None) -> Extractor:
    """The extractor ``evaluate.feature_extractor`` names (``reference``: the folder holding the domain
    extractor, when it is not yet at ``paths.reference``)."""
    check(params)
    if reference is not None:
        params = params.model_copy(update={"paths": params.paths.model_copy(update={"reference": str(reference)})})
    return REGISTRY[params.evaluate.feature_extractor](params, device)


def _identity(extractor: Extractor) -> dict:
    return {"extractor": extractor.name, "extractor_sha256": extractor.sha256, "batch": extractor.batch}


def save_real(folder: Path, extractor: Extractor, splits: dict) -> dict:
    """Write the real splits' features (tensors + JSON); what each evaluation reads instead of recomputing them.
    Returns the features."""
    from synthdata.checkpoint import write_tensors

    feats = {s: extractor(splits[s].images) for s in REAL_SPLITS}
    hashes = {s: sha256_of_rows(splits[s]) for s in REAL_SPLITS}
    info = {"format": REAL_FORMAT, **_identity(extractor), "pixels_sha256": hashes}
    write_tensors(folder / REAL_FILE, info, {s: torch.from_numpy(f) for s, f in feats.items()})
    return feats


def load_real(extractor: Extractor, splits: dict, params: Params) -> dict[str, np.ndarray]:
    """The real splits' features that ``reference`` made with this very extractor on these very images."""
    from synthdata.checkpoint import read_tensors

    path = Path(params.paths.reference) / REAL_FILE
    info, state = read_tensors(path, REAL_FORMAT, "real-feature file", "run 'synthdata reference'")
    want = {**_identity(extractor), "pixels_sha256": {s: sha256_of_rows(splits[s]) for s in REAL_SPLITS}}
    stale = sorted(k for k, v in want.items() if info.get(k) != v)
    if stale:
        raise SynthdataError(
            f"{path}: made with another {' / '.join(stale)} than this evaluation's; run 'synthdata reference' again"
        )
    return {s: state[s].numpy() for s in REAL_SPLITS}


def sha256_of_rows(dataset) -> str:
    """One hash of a dataset's images in order (from the per-image pixel hashes of its metadata)."""
    import hashlib

    return hashlib.sha256("".join(dataset.metadata["pixel_sha256"]).encode()).hexdigest()


@dataclass(frozen=True)
class ChunkTask:
    """Rows of a stored dataset to featurise on any worker: read from their files, reduced to their moments,
    and the features of the ``keep`` rows (positions in the chunk) sent back."""

    root: str  # the dataset folder, readable by the worker
    files: tuple[str, ...]  # the rows' file names (metadata order)
    keep: tuple[int, ...]
    params: Params  # which extractor (evaluate.*, paths.reference and paths.prepared made absolute)
    device: str
    sha256: str  # the extractor file the stage uses: a worker that finds another refuses
    neighbours: bool = False  # also each row's nearest real train image (synthdata.memorization)


@dataclass(frozen=True)
class ChunkFeatures:
    moments: Moments
    kept: np.ndarray  # (len(keep), D) float64
    nearest: dict | None = None  # {space: (distance float64 (n,), train index int64 (n,))}


@functools.lru_cache(maxsize=2)
def _worker_extractor(params_json: str, device: str, sha256: str) -> Extractor:  # sha256: a changed file reloads
    from synthdata.runtime import pick_device

    return build(Params.model_validate_json(params_json), pick_device(device))


def chunk_features(task: ChunkTask) -> ChunkFeatures:
    """One chunk's moments and kept features: a pure function of the task (a chunk made twice is harmless)."""
    extractor = _worker_extractor(task.params.model_dump_json(), task.device, task.sha256)
    if extractor.sha256 != task.sha256:
        raise SynthdataError(
            f"{extractor.name} feature extractor: sha256 {extractor.sha256[:12]}... on this worker, "
            f"{task.sha256[:12]}... in the stage; give the workers the same {task.params.paths.reference}"
        )
    images = torch.stack(decode(Path(task.root), task.files))
    feats = extractor(images)
    nearest = None
    if task.neighbours:
        train_feats, train_pixels = _train_split(task.params.paths.reference, task.params.paths.prepared, _stamp(task))
        nearest = {
            "features": memorization.nearest(feats, train_feats),
            "pixels": memorization.nearest(memorization.flat(images), train_pixels),
        }
    return ChunkFeatures(Moments.of(feats), feats[list(task.keep)], nearest)


def _stamp(task: ChunkTask) -> tuple:
    files = (Path(task.params.paths.reference) / REAL_FILE, Path(task.params.paths.prepared) / "train/metadata.parquet")
    return tuple((p.stat().st_mtime_ns, p.stat().st_size) for p in files if p.exists())


@functools.lru_cache(maxsize=1)
def _train_split(reference: str, prepared: str, stamp: tuple) -> tuple[np.ndarray, torch.Tensor]:
    """The real train split's features (from ``reference``'s file) and pixels (uint8 rows), once per worker
    (``stamp``: the files' times and sizes, so a remade split is read again)."""
    from synthdata.checkpoint import read_tensors

    path = Path(reference) / REAL_FILE
    _, state = read_tensors(path, REAL_FORMAT, "real-feature file", "run 'synthdata reference'")
    return state["train"].numpy(), load_dataset(Path(prepared) / "train", workers=1).images.reshape(
        len(state["train"]), -1
    )


def of_dataset(
    extractor: Extractor,
    params: Params,
    root: str | Path,
    files: Sequence[str],
    keep: np.ndarray,
    device: str,
    neighbours: bool = False,
) -> tuple[np.ndarray, Moments, dict | None]:
    """The features of rows ``keep`` (sorted) of a stored dataset, the moments of all its rows and, with
    ``neighbours``, every row's nearest real train image in features and pixels (``{space: (distance, index)}``,
    :mod:`synthdata.memorization`), chunk by chunk
    (``evaluate.shard_size`` rows, rounded up to whole extractor batches, so every row is featurised in the
    batch it would be in one pass) on local processes or the Dask cluster of ``runtime.dask_address``; chunks
    are merged in order, so the result does not depend on where they ran."""
    size = -(-params.evaluate.shard_size // extractor.batch) * extractor.batch
    absolute = {k: str(Path(getattr(params.paths, k)).resolve()) for k in ("reference", "prepared")}
    paths = params.paths.model_copy(update=absolute)
    portable = params.model_copy(update={"paths": paths})
    tasks = []
    for lo in range(0, len(files), size):
        hi = min(lo + size, len(files))
        rows = keep[(keep >= lo) & (keep < hi)] - lo
        tasks.append(
            ChunkTask(
                str(Path(root).resolve()),
                tuple(files[lo:hi]),
                tuple(int(r) for r in rows),
                portable,
                device,
                extractor.sha256,
                neighbours,
            )
        )
    inline = device.startswith("cuda")
    parts = list(executors.run(chunk_features, tasks, params.runtime, params.evaluate.workers, inline))
    moments = functools.reduce(Moments.merge, (p.moments for p in parts), Moments.of(np.zeros((0, extractor.dim))))
    kept = np.concatenate([p.kept for p in parts]) if parts else np.zeros((0, extractor.dim))
    nearest = None
    if neighbours:
        nearest = {
            s: tuple(np.concatenate([p.nearest[s][i] for p in parts]) for i in (0, 1)) for s in memorization.SPACES
        }
    return kept, moments, nearest
