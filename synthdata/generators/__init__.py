"""Conditional generators, registered by name. Every module or sub-package here that is not a helper is
imported here, so a new generator is one new file (or package, like ``cgan``) with a class decorated by
``@register``."""

import importlib
import pkgutil

from synthdata.generators.base import REGISTRY, Generator, GeneratorConfig, generator_names, get, register
from synthdata.generators.noise import latent_noise, noise

_HELPERS = {"base", "latent", "losses", "nets", "noise"}
for _module in pkgutil.iter_modules(__path__):
    if _module.name not in _HELPERS:
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["REGISTRY", "Generator", "GeneratorConfig", "generator_names", "get", "latent_noise", "noise", "register"]
