"""The monorepo's packaging promises: one version, sibling ranges, extras, entry points, no cycles."""

import importlib.metadata
import re
from pathlib import Path

import tomllib

from invertavatar_core import build_registry, get_plugin_manager
from invertavatar_core.version import __version__

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {p.parent.name: tomllib.loads(p.read_text()) for p in sorted((ROOT / "packages").glob("*/pyproject.toml"))}
SIBLINGS = [name for name in PACKAGES if name != "core"]


def test_the_five_packages():
    assert set(PACKAGES) == {"core", "prior-next3d", "encoders", "aggregators", "faceverse"}
    for folder, data in PACKAGES.items():
        assert data["project"]["name"] == f"invertavatar-{folder}"
        import_name = "invertavatar_" + folder.replace("-", "_")
        assert (ROOT / "packages" / folder / "src" / import_name / "__init__.py").is_file()
        assert data["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"] == [f"src/{import_name}"]


def test_one_shared_version():
    assert {data["project"]["version"] for data in PACKAGES.values()} == {__version__}


def test_siblings_depend_on_core_with_a_range():
    for name in SIBLINGS:
        deps = PACKAGES[name]["project"]["dependencies"]
        assert "invertavatar-core>=0.1,<0.2" in deps, name


def test_core_all_extra_pulls_every_sibling_and_core_has_no_hard_cycle():
    core = PACKAGES["core"]["project"]
    extras = core["optional-dependencies"]
    # Everything the README workflow needs, `fit`'s landmark detector (the mediapipe extra) and
    # mesh export (the export extra) included.
    assert extras["all"] == [
        "invertavatar-core[prior-next3d,encoders,aggregators,faceverse,export]",
        "invertavatar-faceverse[mediapipe]>=0.1,<0.2",
    ]
    for name in SIBLINGS:
        assert extras[name] == [f"invertavatar-{name}>=0.1,<0.2"]
    assert extras["export"] == ["scikit-image>=0.19"]
    assert not [d for d in core["dependencies"] if d.startswith("invertavatar-")]


def test_torch_is_pinned_and_no_torchvision_dependency():
    core = PACKAGES["core"]["project"]["dependencies"]
    assert "torch==2.13.0" in core
    for data in PACKAGES.values():
        assert not [d for d in data["project"].get("dependencies", []) if d.startswith("torchvision")]


def test_each_sibling_has_one_entry_point_that_registers_something():
    registry = build_registry(get_plugin_manager(autoload=True))
    assert not registry.problems, registry.problems
    for name in SIBLINGS:
        eps = PACKAGES[name]["project"]["entry-points"]["invertavatar"]
        assert list(eps.values()) == [f"invertavatar_{name.replace('-', '_')}.plugin"]
        dist = f"invertavatar-{name}"
        assert [e for e in registry.entries() if e.distribution == dist], f"{dist} registers nothing"


def test_installed_entry_points_match_the_pyprojects():
    installed = {ep.value for ep in importlib.metadata.entry_points(group="invertavatar")}
    for name in SIBLINGS:
        assert f"invertavatar_{name.replace('-', '_')}.plugin" in installed


def test_no_shared_namespace_package():
    assert not list((ROOT / "packages").glob("*/src/invertavatar/__init__.py"))


def test_readme_opens_with_the_two_commands_ci_runs():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```(?:bash|sh)\n(.*?)```", readme, flags=re.S)
    assert blocks, "README needs its set-up commands in a bash block"
    commands = [line for line in blocks[0].splitlines() if line.strip() and not line.startswith("#")]
    assert len(commands) == 2, commands
    ci = (ROOT / ".ci" / "run").read_text()
    install = commands[0].split("&& invertavatar demo")[0].strip()
    assert "invertavatar demo" in commands[0] and install in ci
    assert commands[1] in ci


def test_every_package_ships_the_licence_its_types_and_the_same_classifiers_and_urls():
    licence = (ROOT / "LICENSE").read_bytes()
    assert b"Apache License" in licence and b"Version 2.0, January 2004" in licence
    classifiers = PACKAGES["core"]["project"]["classifiers"]
    assert "Typing :: Typed" in classifiers
    # PEP 639: the SPDX expression is the licence; a License :: classifier beside it is an error.
    assert not [c for c in classifiers if c.startswith("License ::")]
    for folder, data in PACKAGES.items():
        project = data["project"]
        assert project["license"] == "Apache-2.0" and project["license-files"] == ["LICENSE"], folder
        assert (ROOT / "packages" / folder / "LICENSE").read_bytes() == licence, folder
        import_name = "invertavatar_" + folder.replace("-", "_")
        assert (ROOT / "packages" / folder / "src" / import_name / "py.typed").is_file(), folder
        assert project["classifiers"] == classifiers, folder
        assert project["urls"] == PACKAGES["core"]["project"]["urls"], folder


def test_mediapipe_extra_caps_what_would_make_pip_backtrack():
    # mediapipe 0.10.21 needs numpy<2; its unpinned jax, jaxlib and opencv-contrib-python are capped at the
    # last releases accepting numpy<2, and constraints.txt pins those exact releases.
    extra = PACKAGES["faceverse"]["project"]["optional-dependencies"]["mediapipe"]
    assert {"mediapipe==0.10.21", "numpy<2", "jax<0.7.2", "jaxlib<0.7.2", "opencv-contrib-python<4.12"} <= set(extra)
    pins = {
        line.split("==")[0]: line.split("==")[1]
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    }
    assert pins["jax"] == pins["jaxlib"] == "0.7.1" and pins["opencv-contrib-python"] == "4.11.0.86"
