"""Sample-quality metrics. ``fid``, ``kid`` and ``prdc`` are pure functions of two float arrays (Fréchet
distance, kernel distance, precision / recall / density / coverage); ``registry`` names the metrics
``evaluate`` runs and the scores record consumers read; ``standard`` registers the built-in ones."""

from synthdata.metrics import standard  # noqa: F401  (registers the built-in metrics)
from synthdata.metrics.fid import FeatureStats, fid_from_features, frechet_distance
from synthdata.metrics.kid import kernel_distance
from synthdata.metrics.prdc import prdc
from synthdata.metrics.registry import FACTS, REGISTRY, Column, Inputs, Result, Scores, register_metric

__all__ = [
    "FACTS",
    "REGISTRY",
    "Column",
    "FeatureStats",
    "Inputs",
    "Result",
    "Scores",
    "frechet_distance",
    "fid_from_features",
    "kernel_distance",
    "prdc",
    "register_metric",
]
