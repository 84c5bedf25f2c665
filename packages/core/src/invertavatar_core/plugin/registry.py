"""The component registry: typed registration, lookup with suggestions, creation by config.

``build_registry(pm)`` calls every registration hook with a fresh :class:`Registrar` per kind and
returns an immutable :class:`Registry`. A plugin whose hook raises is reported in
``Registry.problems`` by name; the rest of the registry is still built.
"""

import difflib
import re
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatch
from types import MappingProxyType
from typing import Any

from pydantic import Field, TypeAdapter

from invertavatar_core.plugin.kinds import BUILTIN_PROVIDERS, KINDS, ComponentConfig
from invertavatar_core.plugin.manager import PluginLoadError, PluginManager

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

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")
"""Registry names: lowercase snake_case."""


class RegistrationError(ValueError):
    """A plugin tried to register something malformed."""


class DuplicateComponentError(RegistrationError):
    """Two providers registered the same (kind, name)."""


class UnknownComponentError(KeyError):
    """A name that is not registered; the message lists close matches and install hints.

    ``skipped`` (plugin -> (distribution, why), see ``PluginManager.skipped``) turns "not
    installed" into the reason an installed provider was kept out (e.g. blocked by
    ``INVERTAVATAR_DISABLED_PLUGINS``).
    """

    def __init__(
        self, kind: str, name: str, known: Iterable[str], skipped: Mapping[str, tuple[str, str]] | None = None
    ) -> None:
        self.kind, self.name, self.known = kind, name, sorted(known)
        skipped = dict(skipped or {})
        parts = [f"unknown {kind} {name!r}."]
        hint = BUILTIN_PROVIDERS.get((kind, name))
        if hint:
            kept_out = [
                (plugin, why) for plugin, (dist, why) in skipped.items() if dist == _distribution_of_requirement(hint)
            ]
            if kept_out:
                parts += [f"{kind} {name!r} is provided by plugin {plugin!r}, {why}." for plugin, why in kept_out]
            else:
                parts.append(f"{kind} {name!r} is a built-in that is not installed; install `{hint}`.")
        elif skipped:
            parts.append("Plugins kept out: " + ", ".join(f"{p!r} ({why})" for p, (_, why) in skipped.items()) + ".")
        close = difflib.get_close_matches(name, self.known, n=3, cutoff=0.6)
        if close:
            parts.append("Did you mean " + " or ".join(repr(c) for c in close) + "?")
        parts.append(f"Known {kind}s: {', '.join(self.known) or '(none installed)'}.")
        self.message = " ".join(parts)
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


def _distribution_of_requirement(requirement: str) -> str:
    """The distribution a ``BUILTIN_PROVIDERS`` requirement installs (``invertavatar-core[x]``: ``invertavatar-x``)."""
    base, _, extra = requirement.partition("[")
    return f"invertavatar-{extra.rstrip(']')}" if base == "invertavatar-core" and extra else base


@dataclass(frozen=True)
class RegistryEntry:
    """One registered component."""

    kind: str
    name: str
    factory: Callable[..., Any]
    config_cls: type[ComponentConfig]
    description: str
    plugin: str
    """Name of the plugin that registered it."""
    distribution: str
    """Distribution that provides the plugin."""
    tiny: Mapping[str, Any] = field(default_factory=dict)
    """Config overrides that build a tiny instance (tests, conformance kit, CPU demos)."""

    @property
    def provider(self) -> str:
        """``distribution (plugin)`` for messages."""
        return f"{self.distribution} (plugin {self.plugin!r})"


class Registrar:
    """Handed to one registration hook for one kind; validates every ``add`` on the spot."""

    def __init__(
        self,
        kind: str,
        entries: dict[str, RegistryEntry],
        plugin: str,
        distribution: str,
        conflicts: list[tuple[RegistryEntry, str]] | None = None,
    ) -> None:
        self.kind = kind
        self._entries = entries
        self._plugin = plugin
        self._distribution = distribution
        self._conflicts = conflicts
        """When a list, a duplicate is recorded here (entry, message) instead of raising."""

    def add(
        self,
        name: str,
        factory: Callable[..., Any],
        config_cls: type[ComponentConfig],
        *,
        description: str,
        tiny: Mapping[str, Any] | None = None,
        replace: bool = False,
    ) -> None:
        """Register ``name`` for this kind.

        Args:
            name: lowercase snake_case registry name.
            factory: ``factory(config, **context)`` builds the component.
            config_cls: subclass of this kind's config base whose ``name`` is ``Literal[name]``.
            description: one line for ``invertavatar plugins``.
            tiny: config overrides for a tiny instance (tests and CPU demos).
            replace: deliberately override an existing registration (tests only).

        Raises:
            RegistrationError: malformed name, factory or config class.
            DuplicateComponentError: the name is taken and ``replace`` is false.
        """
        kind = KINDS[self.kind]
        where = f"{self.kind} {name!r} from {self._distribution} (plugin {self._plugin!r})"
        if not isinstance(name, str) or not NAME_PATTERN.match(name):
            raise RegistrationError(f"{where}: name must match {NAME_PATTERN.pattern}")
        if not callable(factory):
            raise RegistrationError(f"{where}: factory {factory!r} is not callable")
        if not (isinstance(config_cls, type) and issubclass(config_cls, kind.config_base)):
            raise RegistrationError(f"{where}: config class {config_cls!r} must subclass {kind.config_base.__name__}")
        literal = typing.get_args(config_cls.model_fields["name"].annotation)
        if literal != (name,) or config_cls.model_fields["name"].default != name:
            raise RegistrationError(
                f"{where}: {config_cls.__name__}.name must be `Literal[{name!r}] = {name!r}`, "
                f"found {config_cls.model_fields['name'].annotation} = {config_cls.model_fields['name'].default!r}"
            )
        if not description or "\n" in description:
            raise RegistrationError(f"{where}: description must be one non-empty line")
        tiny = dict(tiny or {})
        config_cls.model_validate({"name": name, **tiny})  # tiny overrides must be valid
        entry = RegistryEntry(
            kind=self.kind,
            name=name,
            factory=factory,
            config_cls=config_cls,
            description=description,
            plugin=self._plugin,
            distribution=self._distribution,
            tiny=MappingProxyType(tiny),
        )
        if name in self._entries and not replace:
            other = self._entries[name]
            message = (
                f"{self.kind} {name!r} is registered twice: by {other.provider} and by "
                f"{self._distribution} (plugin {self._plugin!r}); uninstall one or block it with "
                f"INVERTAVATAR_DISABLED_PLUGINS"
            )
            if self._conflicts is None:
                raise DuplicateComponentError(message)
            self._conflicts.append((entry, message))
            return
        self._entries[name] = entry


class Registry:
    """Immutable mapping kind -> name -> :class:`RegistryEntry`, with timm-style helpers."""

    def __init__(
        self,
        entries: Mapping[str, Mapping[str, RegistryEntry]],
        problems: Iterable[PluginLoadError] = (),
        *,
        skipped: Mapping[str, tuple[str, str]] | None = None,
        conflicts: Iterable[tuple[RegistryEntry, str]] = (),
    ) -> None:
        self._entries = MappingProxyType(
            {kind: MappingProxyType(dict(sorted(entries.get(kind, {}).items()))) for kind in KINDS}
        )
        self.problems: tuple[PluginLoadError, ...] = tuple(problems)
        """Plugins that failed to load or whose registration hook raised."""
        self.skipped: Mapping[str, tuple[str, str]] = MappingProxyType(dict(skipped or {}))
        """Installed plugins the environment kept out: name -> (distribution, why)."""
        self.conflicts: tuple[tuple[RegistryEntry, str], ...] = tuple(conflicts)
        """Second registrations of a taken name (``build_registry(strict=False)`` only), with the message."""
        self._adapters: dict[str, TypeAdapter] = {}

    def _check_kind(self, kind: str) -> None:
        if kind not in KINDS:
            raise KeyError(f"unknown kind {kind!r}; kinds are {', '.join(KINDS)}")

    def names(self, kind: str, pattern: str | None = None) -> list[str]:
        """Registered names of ``kind``, sorted, optionally filtered by a glob ``pattern``."""
        self._check_kind(kind)
        return [n for n in self._entries[kind] if pattern is None or fnmatch(n, pattern)]

    def entries(self, kind: str | None = None) -> list[RegistryEntry]:
        """All entries (of one kind, or of every kind in kind order)."""
        kinds = [kind] if kind else list(KINDS)
        for k in kinds:
            self._check_kind(k)
        return [e for k in kinds for e in self._entries[k].values()]

    def entry(self, kind: str, name: str) -> RegistryEntry:
        """The entry for ``name``; raises :class:`UnknownComponentError` with suggestions."""
        self._check_kind(kind)
        try:
            return self._entries[kind][name]
        except KeyError:
            raise UnknownComponentError(kind, name, self._entries[kind], self.skipped) from None

    def __contains__(self, key: tuple[str, str]) -> bool:
        kind, name = key
        return kind in self._entries and name in self._entries[kind]

    def config_cls(self, kind: str, name: str) -> type[ComponentConfig]:
        """The config class registered for ``name``."""
        return self.entry(kind, name).config_cls

    def default_config(self, kind: str, name: str, **overrides: Any) -> ComponentConfig:
        """The default config of ``name`` with ``overrides`` applied."""
        return self.config_cls(kind, name).model_validate({"name": name, **overrides})

    def tiny_config(self, kind: str, name: str, **overrides: Any) -> ComponentConfig:
        """The registered tiny config of ``name`` (for tests and CPU runs) plus ``overrides``."""
        entry = self.entry(kind, name)
        return entry.config_cls.model_validate({"name": name, **entry.tiny, **overrides})

    def validate_config(self, kind: str, data: Any) -> ComponentConfig:
        """Validate a mapping (or config instance) of ``kind`` through the registered class."""
        base = KINDS[kind].config_base
        if isinstance(data, base):
            self.entry(kind, data.name)  # still must be registered
            return data
        if isinstance(data, ComponentConfig):
            raise TypeError(f"expected a {kind} config, got {type(data).__name__} ({data.name!r})")
        if not isinstance(data, Mapping):
            raise TypeError(f"a {kind} config must be a mapping with a 'name' key, got {type(data).__name__}")
        if "name" not in data:
            raise ValueError(f"a {kind} config needs a 'name'; known: {', '.join(self.names(kind))}")
        return self.config_cls(kind, data["name"]).model_validate(dict(data))

    def create(self, kind: str, config: Any, **context: Any) -> Any:
        """Build a component from its config (mapping, instance or bare name).

        Example:
            >>> registry.create("aggregator", {"name": "conv_gru"}, channels=64)  # doctest: +SKIP
        """
        if isinstance(config, str):
            config = {"name": config}
        config = self.validate_config(kind, config)
        return self.entry(kind, config.name).factory(config, **context)

    def config_union(self, kind: str) -> Any:
        """A discriminated union of the installed config classes of ``kind`` (for JSON schema)."""
        classes = tuple(e.config_cls for e in self.entries(kind))
        if not classes:
            return KINDS[kind].config_base
        if len(classes) == 1:
            return classes[0]
        return typing.Annotated[typing.Union[classes], Field(discriminator="name")]  # noqa: UP007


def build_registry(pm: PluginManager, *, strict: bool = True) -> Registry:
    """Call every registration hook and collect the result.

    Each hook implementation is called on its own so that one that raises is reported (in
    ``Registry.problems``) without hiding the others. Duplicates and malformed registrations
    raise, because silently picking one provider would make results irreproducible; with
    ``strict=False`` (listing only, ``invertavatar plugins``) a duplicate is kept in
    ``Registry.conflicts`` instead, so both providers can be shown.
    """
    entries: dict[str, dict[str, RegistryEntry]] = {kind: {} for kind in KINDS}
    conflicts: list[tuple[RegistryEntry, str]] | None = None if strict else []
    problems: list[PluginLoadError] = list(pm.load_errors)
    trace = pm.trace.root.get("registry")  # writes only when INVERTAVATAR_TRACE_PLUGINS is set
    for kind in KINDS.values():
        caller = getattr(pm.hook, kind.hook_name)
        # Registration order (pluggy's call order is the reverse), so a later plugin's
        # ``replace=True`` overrides an earlier one.
        for impl in caller.get_hookimpls():
            plugin_name = impl.plugin_name
            distribution = pm.distribution_of(impl.plugin)
            registrar = Registrar(kind.name, entries[kind.name], plugin_name, distribution, conflicts)
            kwargs = {arg: registrar for arg in impl.argnames if arg == "registrar"}
            trace(f"{kind.hook_name} -> plugin {plugin_name!r} ({distribution})")
            try:
                impl.function(**kwargs)
            except RegistrationError:
                raise
            except Exception as exc:  # noqa: BLE001 - report the plugin, keep the others
                problems.append(PluginLoadError(plugin_name, distribution, f"{type(exc).__name__}: {exc}"))
    return Registry(entries, problems, skipped=pm.skipped, conflicts=conflicts or ())
