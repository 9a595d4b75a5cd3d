"""Sample-quality metrics on feature vectors: Fréchet distance (FID), kernel distance (KID), and
precision / recall / density / coverage (PRDC). Each is a pure function of two float arrays."""

from synthdata.metrics.fid import FeatureStats, fid_from_features, frechet_distance
from synthdata.metrics.kid import kernel_distance
from synthdata.metrics.prdc import prdc

__all__ = ["FeatureStats", "frechet_distance", "fid_from_features", "kernel_distance", "prdc"]
