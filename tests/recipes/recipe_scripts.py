"""Load a script under recipes/ as a module (the scripts are not in a package)."""

import importlib.util
from pathlib import Path
from types import ModuleType

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def load_recipe_script(relative: str, module_name: str) -> ModuleType:
    """``recipes/<relative>`` imported under ``module_name``."""
    spec = importlib.util.spec_from_file_location(module_name, RECIPES / relative)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
