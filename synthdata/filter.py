"""Stage ``filter``: train the classifier of classifier-filtered sampling (:mod:`synthdata.filtering`).

The filter classifier is trained on the real **train** split only, for a fixed budget (``filter.classifier``;
no model selection, so it never reads the val or test split; in the low-data protocol it sees exactly the
``prepare.train_per_class`` images the generators see). With ``filter.enabled``, ``sample`` keeps a candidate
image of class *k* only if the filter classifier predicts *k* (with probability >= ``filter.min_confidence``), and
records how many candidates each class needed (its acceptance rate).
"""

from __future__ import annotations

from pathlib import Path

from synthdata import classifier, locks
from synthdata.dataset import load_dataset
from synthdata.filtering import FILE, INFO
from synthdata.fsutil import atomic_dir, sha256_file, write_json
from synthdata.params import Params, resolved
from synthdata.runtime import setup_device
from synthdata.seeding import derive


def run(params: Params) -> dict:
    with locks.hold(writes=[params.paths.filter], reads=[params.paths.prepared]):
        return _run(params)


def _run(params: Params) -> dict:
    fp = params.filter
    train_dir = Path(params.paths.prepared) / "train"
    with atomic_dir(params.paths.filter) as tmp:
        write_json(tmp / "params.json", resolved(params))
        if not fp.enabled:
            info = {"enabled": False}
            write_json(tmp / INFO, info)
            return info
        device = setup_device(params.runtime)
        train = load_dataset(train_dir)  # the train split only: val and test are never opened here
        model, _ = classifier.fit(
            train.images,
            train.labels,
            None,
            None,
            len(train.class_names),
            fp.classifier,
            derive(fp.seed, "judge"),
            device,
        )  # the seed stream keeps its first name
        info = {
            "enabled": True,
            "in_channels": int(train.images.shape[1]),
            "num_classes": len(train.class_names),
            "image_hw": list(train.images.shape[2:]),
            "width": fp.classifier.width,
            "feature_dim": fp.classifier.feature_dim,
            "class_names": train.class_names,
            "trained_on": train_dir.as_posix(),
            "n_train": len(train.labels),
            "train_sha256": sha256_file(train_dir / "metadata.parquet"),
            "train_accuracy": classifier.accuracy(model, train.images, train.labels),
        }
        info["sha256"] = classifier.save(tmp / FILE, model.cpu(), info)
        write_json(tmp / INFO, info)
    return {k: info[k] for k in ("enabled", "n_train", "train_accuracy")}
