"""Every hook has a test named after it and is documented with its exact signature (datasette's meta-tests)."""

import inspect
from pathlib import Path

import pytest

from invertavatar_core.plugin import hookspecs

ROOT = Path(__file__).resolve().parents[2]
HOOKS = [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("invertavatar_")]


def test_hooks_found():
    from invertavatar_core import KINDS

    assert set(HOOKS) == {
        "invertavatar_add_commands",
        "invertavatar_register_aggregators",
        "invertavatar_register_encoders",
        "invertavatar_register_evaluation_protocols",
        "invertavatar_register_inverters",
        "invertavatar_register_landmark_detectors",
        "invertavatar_register_metrics",
        "invertavatar_register_morphable_models",
        "invertavatar_register_priors",
        "invertavatar_register_rasterizers",
    }
    assert {k.hook_name for k in KINDS.values()} == set(HOOKS) - {"invertavatar_add_commands"}  # one per kind


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_test(hook):
    sources = "\n".join(p.read_text() for p in (ROOT / "tests").rglob("test_*.py"))
    assert f"def test_hook_{hook}(" in sources, f"add a test named test_hook_{hook}"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented_with_its_signature(hook):
    signature = f"{hook}({', '.join(inspect.signature(getattr(hookspecs, hook)).parameters)})"
    docs = (ROOT / "docs" / "plugins.md").read_text()
    assert f"### `{signature}`" in docs, f"docs/plugins.md lacks a heading for {signature}"
