"""The five wheels as a user gets them: metadata, licence, py.typed, and `invertavatar-core[all]` running `fit`.

The wheels are built into a temporary folder (``pip wheel --no-deps``) and installed from it alone
(``--no-index``) into a fresh venv without system site packages. The third-party dependencies
(torch, mediapipe, ...) would cost gigabytes to download again, so the venv gets links to those
already installed here — never to our own distributions — and pip resolves ``[all]`` against them:
what it does not find installed it would have to download, and ``--no-index`` makes that an error.
"""

import email
import importlib.util
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from invertavatar_core.data.datasets import FitDataset
from invertavatar_core.version import __version__

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("core", "prior-next3d", "encoders", "aggregators", "faceverse")
HAS_MEDIAPIPE = importlib.util.find_spec("mediapipe") is not None


def _pip(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True, cwd=cwd, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> dict[str, Path]:
    """Distribution name -> wheel built from packages/."""
    out = tmp_path_factory.mktemp("wheels")
    _pip("wheel", "--quiet", "--no-deps", "-w", str(out), *(str(ROOT / "packages" / p) for p in PACKAGES), cwd=out)
    built = {path.name.split("-")[0].replace("_", "-"): path for path in out.glob("*.whl")}
    assert sorted(built) == sorted(f"invertavatar-{p}" for p in PACKAGES)
    return built


@pytest.mark.slow
def test_every_wheel_carries_the_licence_types_and_metadata(wheels):
    licence = (ROOT / "LICENSE").read_bytes()
    assert b"Apache License" in licence and b"Version 2.0, January 2004" in licence
    for dist, wheel in wheels.items():
        import_name = dist.replace("-", "_")
        with zipfile.ZipFile(wheel) as archive:
            names = archive.namelist()
            info = f"{import_name}-{__version__}.dist-info"
            assert archive.read(f"{info}/licenses/LICENSE") == licence, dist
            assert f"{import_name}/py.typed" in names, dist
            meta = email.message_from_bytes(archive.read(f"{info}/METADATA"))
        assert meta["License-Expression"] == "Apache-2.0", dist
        assert "Typing :: Typed" in meta.get_all("Classifier"), dist
        assert any(url.startswith("Paper, https://") for url in meta.get_all("Project-URL")), dist


@pytest.mark.slow
def test_a_model_in_the_pretrained_slot_ships_in_the_core_wheel(tmp_path):
    # The shipped built-in model (or, in a checkout without one, a byte-sized stand-in) must reach the
    # wheel byte for byte: every file under the slot, markers included.
    import shutil

    from invertavatar_core.pretrained import DEFAULT_MODEL

    source = tmp_path / "core"
    shutil.copytree(ROOT / "packages" / "core", source, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    slot = source / "src" / "invertavatar_core" / "pretrained" / DEFAULT_MODEL
    if not slot.is_dir():
        for name in ["config.json", "prior/config.json", "prior/model.safetensors"]:
            (slot / name).parent.mkdir(parents=True, exist_ok=True)
            (slot / name).write_bytes(name.encode())
    expected = {
        f"invertavatar_core/pretrained/{DEFAULT_MODEL}/{p.relative_to(slot).as_posix()}": p.read_bytes()
        for p in slot.rglob("*")
        if p.is_file()
    }
    assert any(name.endswith("prior/model.safetensors") for name in expected)
    out = tmp_path / "wheel"
    _pip("wheel", "--quiet", "--no-deps", "-w", str(out), str(source), cwd=tmp_path)
    (wheel,) = out.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = {n: archive.read(n) for n in archive.namelist() if f"pretrained/{DEFAULT_MODEL}/" in n}
    assert shipped == expected


def _link_third_party(venv: Path) -> None:
    """Make this interpreter's third-party packages (not ours) importable in ``venv`` through symlinks."""
    here = Path(sysconfig.get_paths()["purelib"])
    (target,) = venv.glob("lib/python*/site-packages")
    for entry in here.iterdir():
        name = entry.name.lower()
        if "invertavatar" in name or name.startswith("__editable__") or name.endswith(".pth"):
            continue
        (target / entry.name).symlink_to(entry)


@pytest.mark.slow
@pytest.mark.assets
@pytest.mark.skipif(not HAS_MEDIAPIPE, reason="mediapipe (the [mediapipe] extra) is not installed here to link")
def test_core_all_from_the_wheels_runs_fit_on_a_portrait(wheels, assets_dir, tmp_path):
    photo = assets_dir / "media" / "trump_official_portrait.png"
    canonical = assets_dir / "mediapipe-canonical-face" / "face_model_with_iris.obj"
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
    _link_third_party(venv)
    python = venv / "bin" / "python"
    folder = str(next(iter(wheels.values())).parent)
    install = _pip(
        "--python", str(python), "install", "--no-index", "--find-links", folder, "invertavatar-core[all]", cwd=tmp_path
    )
    assert "looking at multiple versions" not in install.stdout + install.stderr
    # [all] reaches mediapipe: the requirement closure, as the venv's own metadata states it.
    closure = subprocess.run(
        [str(python), "-c", _CLOSURE], capture_output=True, text=True, check=True, timeout=300
    ).stdout.split()
    assert {f"invertavatar-{p}" for p in PACKAGES} | {"mediapipe", "torch", "jax", "opencv-contrib-python"} <= set(
        closure
    )
    _pip("--python", str(python), "check", cwd=tmp_path)
    # Our code comes from the wheels, not from this checkout.
    where = subprocess.run(
        [str(python), "-c", "import invertavatar_faceverse; print(invertavatar_faceverse.__file__)"],
        capture_output=True, text=True, check=True, timeout=300,
    ).stdout  # fmt: skip
    assert str(venv) in where and str(ROOT) not in where
    out = tmp_path / "fit"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    argv = [
        "preprocess",
        str(photo),
        "--out",
        str(out),
        "--model",
        "procedural",
        "--mediapipe-canonical",
        str(canonical),
    ]
    done = subprocess.run(
        [str(venv / "bin" / "invertavatar"), *argv, "--resolution", "128", "--uv-resolution", "32"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    dataset = FitDataset(out)
    assert len(dataset) == 1
    assert dataset[0].visibility.mean() > 0.1  # a face was found and fitted


# Prints every distribution reachable from invertavatar-core[all] through installed metadata.
_CLOSURE = """
import importlib.metadata as md, re
from packaging.requirements import Requirement
seen, todo = set(), [("invertavatar-core", {"all"})]
while todo:
    name, extras = todo.pop()
    key = re.sub(r"[-_.]+", "-", name).lower()
    if (key, tuple(sorted(extras))) in seen:
        continue
    seen.add((key, tuple(sorted(extras))))
    for line in md.requires(name) or []:
        req = Requirement(line)
        if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in extras or {""}):
            todo.append((req.name, set(req.extras)))
print("\\n".join(sorted({k for k, _ in seen})))
"""
