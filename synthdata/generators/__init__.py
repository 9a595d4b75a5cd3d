"""Conditional generators, registered by name. Every module in this package that is not a helper is
imported here, so a new generator is one new file with a class decorated by ``@register``."""

import importlib
import pkgutil

from synthdata.generators.base import (
    REGISTRY,
    Generator,
    GeneratorConfig,
    generator_names,
    get,
    latent_noise,
    register,
)

_HELPERS = {"base", "nets", "losses"}
for _module in pkgutil.iter_modules(__path__):
    if _module.name not in _HELPERS:
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["REGISTRY", "Generator", "GeneratorConfig", "generator_names", "get", "latent_noise", "register"]
