"""Data sources, registered by name (``data.source`` in params.yaml). A new source is one new module."""

import importlib
import pkgutil

from synthdata.sources.base import REGISTRY, LabeledImages, finalize, register

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")


def load(params) -> LabeledImages:
    """Load ``params.data`` (a DataParams) through its registered source, then apply the shared checks."""
    return finalize(REGISTRY[params.source](params), params)


__all__ = ["REGISTRY", "LabeledImages", "load", "register"]
