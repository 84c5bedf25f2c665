"""The layout rules of issue 11, checked on the source text (nothing is imported).

- No library module imports ``invertavatar_core.cli``: control flows from the command line down,
  never up. Only command modules may import it: the CLI's own, and a plugin's modules that add a
  command through the ``invertavatar_add_commands`` hook (they define ``register(subparsers, ...)``
  and take the shared options and helpers from the CLI, so every command reads the same).
- Core's top level holds only the package's entry points; everything else lives in a room.
- The public API is the package root, and importing it stays light (no CLI, training or evaluation).
"""

import ast
import subprocess
import sys
from pathlib import Path

import invertavatar_core

REPO_ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted(REPO_ROOT.glob("packages/*/src/invertavatar_*"))
CORE = REPO_ROOT / "packages" / "core" / "src" / "invertavatar_core"
CLI = "invertavatar_core.cli"

TOP_LEVEL = {"__init__", "errors", "version", "builtin_plugin", "tensor_types"}
"""Core's top-level modules: the public API, errors, version, core's own plugin, the shape vocabulary."""
DEPRECATED_SHIMS = {"components", "protocols", "registry", "aggregation"}
"""Old import paths kept for one minor version (they warn and re-export)."""


def _module_name(path: Path, package_dir: Path) -> str:
    parts = path.relative_to(package_dir.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_modules(tree: ast.AST) -> set[str]:
    """Every absolute module an ``import`` names, with ``from X import y`` also giving ``X.y``."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _imports_cli(name: str) -> bool:
    return name == CLI or name.startswith(CLI + ".")


def _is_command_module(tree: ast.Module) -> bool:
    """A plugin's command module: it defines ``register`` taking argparse sub-parsers, the hook's convention."""
    return any(
        isinstance(node, ast.FunctionDef)
        and node.name == "register"
        and node.args.args
        and node.args.args[0].arg in ("subparsers", "train_group")
        for node in tree.body
    )


def test_all_five_packages_are_walked():
    assert [p.name for p in SOURCES] == [
        "invertavatar_aggregators",
        "invertavatar_core",
        "invertavatar_encoders",
        "invertavatar_faceverse",
        "invertavatar_prior_next3d",
    ]


def test_the_walk_sees_an_import_of_the_cli():
    # Guard against a walker that finds nothing: the CLI's own modules do import the package.
    tree = ast.parse((CORE / "cli" / "train.py").read_text(encoding="utf-8"))
    assert any(_imports_cli(name) for name in _imported_modules(tree))


def test_only_plugin_command_modules_count_as_command_line():
    # The exemption stays narrow: exactly the modules that register a plugin's commands.
    exempt = []
    for package_dir in SOURCES:
        for path in sorted(package_dir.rglob("*.py")):
            module = _module_name(path, package_dir)
            if not _imports_cli(module) and _is_command_module(ast.parse(path.read_text(encoding="utf-8"))):
                exempt.append(module)
    assert exempt == [
        "invertavatar_encoders.release.command",
        "invertavatar_faceverse.commands.convert_faceverse",
        "invertavatar_faceverse.commands.convert_ict",
        "invertavatar_faceverse.commands.preprocess",
        "invertavatar_faceverse.commands.synth_heads",
        "invertavatar_prior_next3d.release.command",
        "invertavatar_prior_next3d.sample_command",
        "invertavatar_prior_next3d.train_command",
    ]


def test_no_library_module_imports_the_cli():
    offenders = []
    for package_dir in SOURCES:
        for path in sorted(package_dir.rglob("*.py")):
            module = _module_name(path, package_dir)
            if _imports_cli(module):
                continue  # the CLI may import itself
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            if _is_command_module(tree):
                continue  # a plugin's command is part of the command line
            bad = sorted(name for name in _imported_modules(tree) if _imports_cli(name))
            if bad:
                offenders.append(f"{module} imports {', '.join(bad)}")
    assert not offenders, "library modules must not import the CLI:\n" + "\n".join(offenders)


def test_core_top_level_holds_only_entry_points_and_deprecated_shims():
    modules = {p.stem for p in CORE.glob("*.py")}
    assert modules == TOP_LEVEL | DEPRECATED_SHIMS, (
        f"unexpected top-level modules in invertavatar_core: {sorted(modules - TOP_LEVEL - DEPRECATED_SHIMS)}; "
        f"missing: {sorted((TOP_LEVEL | DEPRECATED_SHIMS) - modules)}"
    )


PUBLIC_API = {
    "default_registry",
    "preset_experiment",
    "InversionModels",
    "Observation",
    "Avatar",
    "AggregatorBase",
    "Prior",
    "Encoder",
    "LatentEncoder",
    "FeatureEncoder",
    "Aggregator",
    "MorphableModel",
    "Rasterizer",
    "LandmarkDetector",
    "Metric",
    "Inverter",
    "UserError",
    "hookimpl",
    "build_registry",
    "ExperimentConfig",
}
"""What a user or a plugin author reaches from ``invertavatar_core`` directly (issue 11)."""


def test_public_api_is_the_package_root():
    assert PUBLIC_API <= set(invertavatar_core.__all__)
    missing = [name for name in invertavatar_core.__all__ if not hasattr(invertavatar_core, name)]
    assert not missing
    assert len(set(invertavatar_core.__all__)) == len(invertavatar_core.__all__)


def test_importing_the_root_does_not_load_the_cli_training_or_evaluation():
    code = (
        "import sys, invertavatar_core; "
        "print(sorted({m.split('.')[1] for m in sys.modules if m.startswith('invertavatar_core.')}))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    for room in ("cli", "training", "evaluation", "components", "protocols", "registry", "aggregation"):
        assert f"'{room}'" not in loaded, f"import invertavatar_core loads invertavatar_core.{room}: {loaded}"
