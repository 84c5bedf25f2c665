"""One test per hook (the meta-test in tests/meta checks that each hook has its test_hook_<name>)."""

from typing import Literal

import pytest

from invertavatar_core import KINDS, build_registry, hookimpl
from invertavatar_core.plugin.kinds import ComponentConfig


def _register_one(plugin_manager, kind: str) -> None:
    """Register ``acme_<kind>`` through the kind's hook and check it lands in the registry."""
    base = KINDS[kind].config_base
    name = f"acme_{kind}"
    config_cls = type(
        f"Acme{kind.title().replace('_', '')}Config",
        (base,),
        {"__annotations__": {"name": Literal[name]}, "name": name, "__doc__": f"A {kind} from a test plugin."},
    )

    class Plugin:
        pass

    def register(registrar):
        registrar.add(name, lambda config, **context: (config, context), config_cls, description=f"test {kind}")

    setattr(Plugin, KINDS[kind].hook_name, staticmethod(hookimpl(register)))
    plugin_manager.register_plugin(Plugin(), f"acme_{kind}_plugin", "acme-dist")
    registry = build_registry(plugin_manager)
    entry = registry.entry(kind, name)
    assert entry.distribution == "acme-dist" and issubclass(entry.config_cls, ComponentConfig)
    config, context = registry.create(kind, name, extra=1)
    assert config.name == name and context == {"extra": 1}


def test_hook_invertavatar_register_priors(plugin_manager):
    _register_one(plugin_manager, "prior")


def test_hook_invertavatar_register_encoders(plugin_manager):
    _register_one(plugin_manager, "encoder")


def test_hook_invertavatar_register_aggregators(plugin_manager):
    _register_one(plugin_manager, "aggregator")


def test_hook_invertavatar_register_morphable_models(plugin_manager):
    _register_one(plugin_manager, "morphable_model")


def test_hook_invertavatar_register_rasterizers(plugin_manager):
    _register_one(plugin_manager, "rasterizer")


def test_hook_invertavatar_register_landmark_detectors(plugin_manager):
    _register_one(plugin_manager, "landmark_detector")


def test_hook_invertavatar_register_metrics(plugin_manager):
    _register_one(plugin_manager, "metric")


def test_hook_invertavatar_register_inverters(plugin_manager):
    _register_one(plugin_manager, "inverter")


def test_hook_invertavatar_register_evaluation_protocols(plugin_manager):
    _register_one(plugin_manager, "evaluation_protocol")


def test_hook_invertavatar_add_commands(monkeypatch, capsys):
    """A plugin adds a top-level command and a ``train`` stage; both run from the CLI."""
    from invertavatar_core import cli

    class Commands:
        @hookimpl
        def invertavatar_add_commands(self, subparsers, groups):
            hello = subparsers.add_parser("acme-hello", help="say hello")
            hello.add_argument("--who", default="world")
            hello.set_defaults(func=lambda args: print(f"hello {args.who}") or 0)
            stage = groups["train"].add_parser("acme", help="train the acme stage")
            stage.set_defaults(func=lambda args: print("training acme") or 3)

    real = cli.get_plugin_manager

    def manager():
        pm = real()
        pm.register_plugin(Commands(), "acme_commands", "acme-dist")
        return pm

    monkeypatch.setattr(cli, "get_plugin_manager", manager)
    assert cli.main(["acme-hello", "--who", "avatars"]) == 0
    assert cli.main(["train", "acme"]) == 3
    assert capsys.readouterr().out.splitlines() == ["hello avatars", "training acme"]


def test_misspelled_hook_fails_loudly():
    from pluggy import PluginValidationError

    from invertavatar_core import get_plugin_manager

    class Typo:
        @hookimpl
        def invertavatar_register_aggregator(self, registrar):  # missing the final "s"
            pass

    pm = get_plugin_manager(autoload=False)
    pm.register(Typo(), name="typo")
    with pytest.raises(PluginValidationError, match="invertavatar_register_aggregator"):
        pm.check_pending()
