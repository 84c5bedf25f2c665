"""Deprecated alias of :mod:`invertavatar_core.plugin.registry` (the component registry); kept for one minor version."""

import warnings

from invertavatar_core.plugin.registry import (
    NAME_PATTERN,
    DuplicateComponentError,
    Registrar,
    RegistrationError,
    Registry,
    RegistryEntry,
    UnknownComponentError,
    build_registry,
)

__all__ = [
    "DuplicateComponentError",
    "NAME_PATTERN",
    "Registrar",
    "RegistrationError",
    "Registry",
    "RegistryEntry",
    "UnknownComponentError",
    "build_registry",
]

warnings.warn(
    "invertavatar_core.registry is deprecated; import from invertavatar_core.plugin.registry instead",
    DeprecationWarning,
    stacklevel=2,
)
