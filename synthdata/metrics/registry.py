"""The metric registry and the scores record every consumer reads.

A metric is one function decorated with :func:`register_metric` (after stylegan2-ada's ``metric_main``): it
takes the :class:`Inputs` of one evaluation and returns a :class:`Result` — its values under flat keys, and the
sample counts they were made from. ``evaluate`` runs every registered metric in registration order and writes
the merged values into ``metrics.json``; ``publish`` (manifest and dataset card), ``report`` (metrics table)
and ``release`` (``published.csv``) read them back through :class:`Scores`, which knows each metric's
:class:`Column`\\ s from this registry. Adding a metric is one new function; no consumer names it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from synthdata.errors import SynthdataError

# what evaluate records beside the metrics: which features and data they were made from
FACTS = ("feature_extractor", "feature_extractor_sha256", "filter_acceptance")


@dataclass(frozen=True)
class Column:
    """One value of a metric as consumers show it: ``key`` in ``metrics.json``, its standard deviation's key,
    its header in the report's table (``report=False``: card and manifest only) and whether ``published.csv``
    keeps it for every released version."""

    key: str
    label: str = ""
    std: str | None = None
    digits: int = 3
    report: bool = True
    release: bool = False

    @property
    def header(self) -> str:
        return self.label or self.key


@dataclass
class Result:
    """What a metric returns: ``values`` (flat keys of ``metrics.json``), the sample ``counts`` they were made
    from (also written there), per-class rows (merged into ``per_class.csv``), warnings, and ``details`` kept
    in ``details.json`` under the metric's name."""

    values: dict[str, Any]
    counts: dict[str, int] = field(default_factory=dict)
    per_class: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    details: Any = None


@dataclass
class Inputs:
    """One evaluation's data. Features are float64 (N, D) from the chosen extractor; the feature metrics
    compare the same subsample: ``pick["synthetic"]`` and ``pick["train"]`` (equal sizes), per class
    ``pick["class"][k]`` (synthetic, train, test index arrays or None), and ``pick["prdc"]`` (rows of the
    synthetic subsample). ``features["synthetic"]`` holds only the synthetic rows some pick uses (the pick's
    synthetic indices are positions among them), ``moments["synthetic"]`` the moments of every synthetic image.
    ``datasets`` holds the uint8 images of "synthetic", "train", "val" and "test"."""

    features: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    pick: dict[str, Any]
    datasets: dict[str, Any]
    num_classes: int
    params: Any  # synthdata.params.Params
    device: Any  # torch.device
    baseline: dict  # the reference stage's baseline.json
    moments: Any = None  # {"synthetic": metrics.fid.Moments of every synthetic image}, merged from the shards'
    nearest: Any = None  # {space: (distance, index)}: every synthetic image's nearest real train image


@dataclass(frozen=True)
class Metric:
    name: str
    fn: Callable[[Inputs], Result]
    columns: tuple[Column, ...]
    write: Callable[[Path, Result, "Inputs", str], None] | None = None
    description: str = ""


REGISTRY: dict[str, Metric] = {}


def register_metric(
    name: str, columns: tuple[Column | str, ...], write: Callable[[Path, Result, Inputs, str], None] | None = None
):
    """Register ``fn(inputs) -> Result`` as metric ``name``; ``columns`` names the values consumers show
    (a string is a :class:`Column` with defaults); ``write(folder, result, inputs, generator)`` may add files
    (charts, tables) to the evaluation folder."""

    def wrap(fn: Callable[[Inputs], Result]) -> Callable[[Inputs], Result]:
        if name in REGISTRY:
            raise RuntimeError(f"metric {name!r} registered twice")
        cols = tuple(c if isinstance(c, Column) else Column(c) for c in columns)
        doc = (fn.__doc__ or "").strip().split("\n")[0]
        REGISTRY[name] = Metric(name, fn, cols, write, doc)
        return fn

    return wrap


def unregister_metric(name: str) -> None:
    REGISTRY.pop(name, None)


def compute(inputs: Inputs) -> dict[str, Result]:
    """Every registered metric, in registration order."""
    out = {}
    for name, metric in REGISTRY.items():
        result = metric.fn(inputs)
        missing = [c.key for c in metric.columns if c.key not in result.values and c.key not in result.counts]
        if missing:
            raise RuntimeError(f"metric {name!r} returned no value for its column(s) {missing}")
        out[name] = result
    return out


def columns() -> list[Column]:
    return [c for metric in REGISTRY.values() for c in metric.columns]


def score_keys() -> list[str]:
    """The keys of ``metrics.json`` a consumer shows, in order: each column and its std, then the facts."""
    keys = []
    for c in columns():
        keys += [c.key] + ([c.std] if c.std else [])
    return keys + list(FACTS)


@dataclass(frozen=True)
class Scores:
    """A generator's ``metrics.json`` as consumers read it: ``values[key]`` for every key of
    :func:`score_keys` (``None`` where absent, e.g. a metric registered after the evaluation ran)."""

    generator: str
    values: dict[str, Any]

    @classmethod
    def read(cls, folder: Path, generator: str) -> "Scores":
        path = Path(folder) / "metrics.json"
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise SynthdataError(f"{path} not found: run 'synthdata evaluate' (or 'dvc repro') first") from None
        except json.JSONDecodeError as exc:
            raise SynthdataError(f"{path} is not valid JSON ({exc.msg}): run 'synthdata evaluate' again") from None
        return cls(generator, {k: raw.get(k) for k in score_keys()})
