"""The plugin manager: entry-point discovery, environment switches, broken-plugin reporting.

``get_plugin_manager()`` is a factory (never a module-level singleton, never work at import time):

1. add the hook specifications;
2. block the plugin names in ``INVERTAVATAR_DISABLED_PLUGINS`` (comma separated; the names
   ``invertavatar plugins`` shows, e.g. ``aggregators``, ``invertavatar_core.builtin_plugin``);
3. unless ``INVERTAVATAR_DISABLE_PLUGIN_AUTOLOAD`` is on, load every entry point of the group
   ``invertavatar`` (restricted to ``INVERTAVATAR_PLUGINS`` when that allow-list is set); an entry
   point that fails to import is recorded in ``load_errors`` and the others still load; one the
   environment kept out is recorded in ``skipped`` with the reason;
4. register core's own default plugin modules;
5. check that every implementation names a known hook.

``INVERTAVATAR_TRACE_PLUGINS`` prints every hook call. Switches are booleans: ``1``/``true``/
``yes``/``on`` or ``0``/``false``/``no``/``off``/empty; anything else is an error.
"""

import importlib
import importlib.metadata
import os
import sys
import warnings
from dataclasses import dataclass

import pluggy

__all__ = [
    "DEFAULT_PLUGINS",
    "ENV_ALLOW",
    "ENV_DISABLE_AUTOLOAD",
    "ENV_DISABLED",
    "ENV_TRACE",
    "PROJECT_NAME",
    "PluginLoadError",
    "PluginManager",
    "env_flag",
    "get_plugin_manager",
    "hookimpl",
]

PROJECT_NAME = "invertavatar"
"""Plugin manager name, hook marker name and entry-point group."""

hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
"""Decorator for hook implementations in plugin modules."""

ENV_DISABLE_AUTOLOAD = "INVERTAVATAR_DISABLE_PLUGIN_AUTOLOAD"
ENV_DISABLED = "INVERTAVATAR_DISABLED_PLUGINS"
ENV_ALLOW = "INVERTAVATAR_PLUGINS"
ENV_TRACE = "INVERTAVATAR_TRACE_PLUGINS"

DEFAULT_PLUGINS: tuple[str, ...] = ("invertavatar_core.builtin_plugin",)
"""Core's own plugin modules, registered like any other plugin."""


@dataclass(frozen=True)
class PluginLoadError:
    """A plugin that could not be loaded or whose hook raised; the others keep working."""

    plugin: str
    distribution: str
    error: str

    def __str__(self) -> str:
        return f"plugin {self.plugin!r} (from {self.distribution}) failed: {self.error}"


class PluginManager(pluggy.PluginManager):
    """pluggy's manager plus the providing distribution of each plugin and load errors."""

    def __init__(self) -> None:
        super().__init__(PROJECT_NAME)
        self.distributions: dict[str, str] = {}
        """plugin name -> distribution that provides it."""
        self.load_errors: list[PluginLoadError] = []
        """Plugins that failed to import."""
        self.skipped: dict[str, tuple[str, str]] = {}
        """Installed plugins the environment kept out: name -> (distribution, why)."""

    def register_plugin(self, plugin: object, name: str, distribution: str) -> None:
        """Register ``plugin`` under ``name`` and remember its distribution."""
        self.register(plugin, name=name)
        self.distributions[name] = distribution

    def distribution_of(self, plugin: object) -> str:
        """The distribution that provides a registered plugin (best effort)."""
        name = self.get_name(plugin)
        if name in self.distributions:
            return self.distributions[name]
        return distribution_of_module(getattr(plugin, "__name__", type(plugin).__module__))


def distribution_of_module(module_name: str) -> str:
    """Best-effort distribution name for a module, ``"<local>"`` when it is not installed."""
    top = module_name.split(".")[0]
    dists = importlib.metadata.packages_distributions().get(top)
    return dists[0] if dists else "<local>"


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})


def env_flag(name: str) -> bool:
    """A boolean environment switch: unset, empty, 0/false/no/off are off; 1/true/yes/on are on.

    Raises:
        ValueError: any other value (one line naming the variable).
    """
    value = os.environ.get(name, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"environment variable {name}={os.environ[name]!r}: expected 1/true/yes/on or 0/false/no/off")


def _env_list(name: str) -> list[str] | None:
    value = os.environ.get(name)
    if value is None:
        return None
    return [item.strip() for item in value.split(",") if item.strip()]


def _entry_points() -> list[importlib.metadata.EntryPoint]:
    seen: dict[str, importlib.metadata.EntryPoint] = {}
    for ep in importlib.metadata.entry_points(group=PROJECT_NAME):
        # A distribution on sys.path twice yields the same entry point twice.
        seen.setdefault(ep.name, ep)
    return list(seen.values())


def _distribution_of_entry_point(ep: importlib.metadata.EntryPoint) -> str:
    return ep.dist.name if ep.dist is not None else "<unknown>"


def load_entry_points(pm: PluginManager) -> None:
    """Load every allowed, unblocked entry point of the ``invertavatar`` group into ``pm``."""
    allow = _env_list(ENV_ALLOW)
    for ep in _entry_points():
        distribution = _distribution_of_entry_point(ep)
        if pm.is_blocked(ep.name):
            pm.skipped[ep.name] = (distribution, f"blocked by {ENV_DISABLED}")
            continue
        if pm.has_plugin(ep.name):
            continue
        if allow is not None and ep.name not in allow:
            pm.skipped[ep.name] = (distribution, f"not in {ENV_ALLOW}")
            continue
        try:
            module = ep.load()
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not take the others down
            error = PluginLoadError(ep.name, distribution, f"{type(exc).__name__}: {exc}")
            pm.load_errors.append(error)
            warnings.warn(str(error), RuntimeWarning, stacklevel=2)
            continue
        pm.register_plugin(module, ep.name, distribution)


def get_plugin_manager(*, autoload: bool | None = None) -> PluginManager:
    """A fresh plugin manager with every allowed plugin loaded.

    Args:
        autoload: load entry points; ``None`` follows ``INVERTAVATAR_DISABLE_PLUGIN_AUTOLOAD``.

    Example:
        >>> from invertavatar_core import build_registry, get_plugin_manager
        >>> registry = build_registry(get_plugin_manager())
        >>> "conv_gru" in registry.names("aggregator")  # doctest: +SKIP
        True
    """
    from invertavatar_core.plugin import hookspecs

    pm = PluginManager()
    pm.add_hookspecs(hookspecs)
    for name in _env_list(ENV_DISABLED) or []:
        pm.set_blocked(name)
    trace = env_flag(ENV_TRACE)  # read every switch first: a bad value fails before any import
    if autoload is None:
        autoload = not env_flag(ENV_DISABLE_AUTOLOAD)
        if not autoload:
            for ep in _entry_points():
                pm.skipped[ep.name] = (_distribution_of_entry_point(ep), f"not loaded: {ENV_DISABLE_AUTOLOAD} is on")
    if autoload:
        load_entry_points(pm)
    for module_name in DEFAULT_PLUGINS:
        if pm.is_blocked(module_name):
            pm.skipped[module_name] = ("invertavatar-core", f"blocked by {ENV_DISABLED}")
        else:
            pm.register_plugin(importlib.import_module(module_name), module_name, "invertavatar-core")
    pm.check_pending()
    if trace:
        pm.trace.root.setwriter(lambda message: sys.stderr.write(message))
        pm.enable_tracing()
    return pm
