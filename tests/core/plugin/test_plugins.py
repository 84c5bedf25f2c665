"""Discovery through entry points: fake distributions, broken plugins, environment switches."""

import pytest

from invertavatar_core import build_registry, get_plugin_manager
from invertavatar_core.plugin.manager import ENV_ALLOW, ENV_DISABLE_AUTOLOAD, ENV_DISABLED

ACME_MODULE = '''
"""A third-party aggregator plugin, installed only as a dist-info folder on sys.path."""
from typing import Literal

import torch

from invertavatar_core import AggregatorConfig, hookimpl
from invertavatar_core.plugin.bases import AggregatorBase


class AcmeMaxConfig(AggregatorConfig):
    """Element-wise maximum over frames."""

    name: Literal["acme_max"] = "acme_max"


class AcmeMax(AggregatorBase):
    def __init__(self, config, *, channels):
        super().__init__(channels)
        self.config = config

    def init_state(self, like):
        return {"max": torch.full_like(like, float("-inf"))}

    def update(self, state, frame):
        return {"max": torch.maximum(state["max"], frame)}

    def read(self, state):
        return state["max"]


@hookimpl
def invertavatar_register_aggregators(registrar):
    registrar.add("acme_max", AcmeMax, AcmeMaxConfig, description="element-wise max (third party)")
'''


def make_distribution(root, dist_name: str, module_name: str, source: str, entry_name: str) -> None:
    """Write ``module_name.py`` and a ``*.dist-info`` with an ``invertavatar`` entry point under ``root``."""
    (root / f"{module_name}.py").write_text(source)
    info = root / f"{dist_name.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist_name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[invertavatar]\n{entry_name} = {module_name}\n")
    (info / "top_level.txt").write_text(f"{module_name}\n")


@pytest.fixture
def acme(tmp_path, monkeypatch):
    make_distribution(tmp_path, "acme-aggregators", "acme_aggregators", ACME_MODULE, "acme")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path


def test_fake_distribution_registers_through_entry_point(acme):
    registry = build_registry(get_plugin_manager(autoload=True))
    entry = registry.entry("aggregator", "acme_max")
    assert entry.distribution == "acme-aggregators"
    assert entry.plugin == "acme"
    agg = registry.create("aggregator", "acme_max", channels=2)
    import torch

    frames = torch.tensor([[1.0, 5.0], [3.0, -2.0]]).view(1, 2, 2, 1, 1)
    assert agg(frames).flatten().tolist() == [3.0, 5.0]


def test_fake_distribution_in_experiment_config_and_sweep(acme, experiment_data, tmp_path):
    from core_fakes import manager_with_fakes

    from invertavatar_core import ExperimentConfig
    from invertavatar_core.config.sweep import Sweep

    registry = build_registry(manager_with_fakes(autoload=True))
    config = ExperimentConfig.model_validate(
        {**experiment_data, "aggregator": "acme_max"}, context={"registry": registry}
    )
    assert config.aggregator.name == "acme_max"
    sweep = Sweep(experiment_data, ["aggregator.name=acme_max,conv_gru,mean"], registry)
    assert [p.config.aggregator.name for p in sweep.points] == ["acme_max", "conv_gru", "mean"]

    def run_point(point, point_dir):
        agg = registry.create("aggregator", point.config.aggregator, channels=1)
        import torch

        with torch.no_grad():
            return {"out": float(agg(torch.tensor([1.0, 3.0]).view(1, 2, 1, 1, 1)).sum())}

    rows = sweep.run(run_point, tmp_path / "sweep")
    assert [r["out"] for r in rows][0] == 3.0  # max of 1 and 3
    assert (tmp_path / "sweep" / "results.md").read_text().count("acme_max") == 2


BROKEN = "raise ImportError('this plugin needs libfoo')\n"


def test_broken_plugin_import_is_reported_and_others_load(acme, tmp_path):
    make_distribution(tmp_path, "broken-plugin", "broken_plugin", BROKEN, "broken")
    with pytest.warns(RuntimeWarning, match="broken"):
        pm = get_plugin_manager(autoload=True)
    registry = build_registry(pm)
    assert "acme_max" in registry.names("aggregator")
    (problem,) = [p for p in registry.problems if p.plugin == "broken"]
    assert problem.distribution == "broken-plugin" and "libfoo" in problem.error


def test_plugin_whose_hook_raises_is_reported(plugin_manager):
    class Raises:
        from invertavatar_core import hookimpl

        @hookimpl
        def invertavatar_register_aggregators(self, registrar):
            raise RuntimeError("boom")

    plugin_manager.register_plugin(Raises(), "raises", "raising-dist")
    registry = build_registry(plugin_manager)
    assert "conv_gru" in registry.names("aggregator")
    assert any(p.plugin == "raises" and "boom" in p.error for p in registry.problems)


def test_disable_autoload_env(acme, monkeypatch):
    monkeypatch.setenv(ENV_DISABLE_AUTOLOAD, "1")
    registry = build_registry(get_plugin_manager())
    assert "acme_max" not in registry.names("aggregator")


def test_disabled_plugins_env(acme, monkeypatch):
    monkeypatch.setenv(ENV_DISABLED, "acme, other")
    registry = build_registry(get_plugin_manager())
    assert "acme_max" not in registry.names("aggregator")


def test_allow_list_env(acme, monkeypatch):
    monkeypatch.setenv(ENV_ALLOW, "acme")
    registry = build_registry(get_plugin_manager())
    assert registry.names("aggregator") == ["acme_max"]


def test_trace_env(monkeypatch, capsys):
    from core_fakes import manager_with_fakes

    monkeypatch.setenv("INVERTAVATAR_TRACE_PLUGINS", "1")
    build_registry(manager_with_fakes())
    assert "invertavatar_register_aggregators -> plugin 'aggregators'" in capsys.readouterr().err
