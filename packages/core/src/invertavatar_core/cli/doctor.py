"""``invertavatar doctor``: what this machine offers invertavatar, in one screen.

Versions (invertavatar, Python, torch, CUDA, every installed plugin), the device commands run
on, the thread policy, optional extras (MediaPipe, scikit-image, nvdiffrast, PyTorch3D, timm, TensorBoard),
the user-supplied weight files found through the settings, and plugins that failed to load.
"""

import argparse
import importlib.metadata
import importlib.util
import os
import platform
import sys

__all__ = ["EXTRAS", "register", "version_lines"]

EXTRAS: dict[str, str] = {
    "mediapipe": "landmarks for 'preprocess' and the AKD metric (extra: invertavatar-faceverse[mediapipe])",
    "skimage": "marching cubes for 'export' meshes (extra: invertavatar-core[export])",
    "nvdiffrast": "fast CUDA rasterizer 'nvdiffrast'",
    "pytorch3d": "rasterizer 'pytorch3d'",
    "timm": "E_latent on a timm backbone ('timm_backbone')",
    "torchvision": "needed by 'timm_backbone'",
    "tensorboard": "training curves in TensorBoard (written whenever it is installed)",
}
"""Optional import name -> what it enables."""


def register(subparsers: argparse._SubParsersAction, groups: dict) -> None:
    """Add the ``doctor`` command."""
    parser = subparsers.add_parser(
        "doctor",
        help="show versions, device, threads, optional extras and weight files found",
        description=__doc__.split("\n\n")[1].replace("`", "'"),
        epilog="example:\n  invertavatar doctor\n  INVERTAVATAR_THREADS=2 invertavatar doctor",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(func=run)


def _distribution_version(module: str) -> str | None:
    """Version of the installed distribution that provides import name ``module`` (skimage: scikit-image)."""
    names = importlib.metadata.packages_distributions().get(module, [module])
    for name in names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def plugin_distributions() -> dict[str, str]:
    """Distribution name -> version of every installed package with an ``invertavatar`` entry point."""
    found = {}
    for entry_point in importlib.metadata.entry_points(group="invertavatar"):
        if entry_point.dist is not None:
            found[entry_point.dist.name] = entry_point.dist.version
    return dict(sorted(found.items()))


def version_lines() -> list[str]:
    """invertavatar, torch (with its CUDA build and whether a GPU is visible) and the plugins' versions."""
    import torch

    from invertavatar_core.version import __version__

    if torch.version.cuda is None:
        cuda = "CPU-only build"
    elif torch.cuda.is_available():
        cuda = f"CUDA {torch.version.cuda}, {torch.cuda.device_count()} GPU(s) available"
    else:
        cuda = f"CUDA {torch.version.cuda} build, no GPU available"
    plugins = ", ".join(f"{name} {version}" for name, version in plugin_distributions().items()) or "none"
    return [f"invertavatar {__version__}", f"torch {torch.__version__} ({cuda})", f"plugins: {plugins}"]


def _section(title: str, rows: list[tuple[str, str]]) -> None:
    print(f"\n{title}")
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        print(f"  {key.ljust(width)}  {value}")


def _device_rows() -> list[tuple[str, str]]:
    import torch

    from invertavatar_core.config.compute import resolve_device

    rows = [("INVERTAVATAR_DEVICE", os.environ.get("INVERTAVATAR_DEVICE", "(unset)"))]
    try:
        rows.append(("default device", str(resolve_device(None))))
    except ValueError as error:
        rows.append(("default device", f"unusable: {error}"))
    for index in range(torch.cuda.device_count() if torch.cuda.is_available() else 0):
        properties = torch.cuda.get_device_properties(index)
        rows.append((f"cuda:{index}", f"{properties.name}, {properties.total_memory / 2**30:.0f} GiB"))
    return rows


def _thread_rows() -> list[tuple[str, str]]:
    import torch

    from invertavatar_core.config.compute import thread_settings

    settings = thread_settings()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    rows = [
        ("torch threads", f"{torch.get_num_threads()} (policy: {settings.threads} from {settings.source})"),
        ("OMP_WAIT_POLICY", settings.wait_policy),
        ("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "(unset)")),
        ("CPUs usable", str(usable)),
    ]
    if hasattr(os, "getloadavg"):
        rows.append(("load average", " ".join(f"{x:.2f}" for x in os.getloadavg()) + " (1, 5, 15 min)"))
    return rows


def _extra_rows() -> list[tuple[str, str]]:
    rows = []
    for module, purpose in EXTRAS.items():
        if importlib.util.find_spec(module) is None:
            rows.append((module, f"missing - {purpose}"))
        else:
            rows.append((module, f"{_distribution_version(module) or 'installed'} - {purpose}"))
    return rows


def _weight_rows() -> list[tuple[str, str]]:
    from invertavatar_core.config.settings import RuntimeSettings

    settings = RuntimeSettings()
    folder = settings.weights_dir
    if folder is None:
        return [("INVERTAVATAR_WEIGHTS_DIR", "(unset): weight files must be named in the config")]
    if not folder.is_dir():
        return [("INVERTAVATAR_WEIGHTS_DIR", f"{folder} (not a folder)")]
    files = sorted(p for p in folder.iterdir() if p.is_file())
    rows = [("INVERTAVATAR_WEIGHTS_DIR", f"{folder} ({len(files)} files)")]
    rows += [(p.name, f"{p.stat().st_size / 2**20:.1f} MiB") for p in files]
    return rows


def run(args: argparse.Namespace) -> int:
    """Print every section; plugin load problems last."""
    from invertavatar_core.cli import cli_registry

    print("\n".join(version_lines()))
    print(f"python {platform.python_version()} ({sys.executable})")
    _section("device", _device_rows())
    _section("threads", _thread_rows())
    _section("optional extras", _extra_rows())
    _section("weight files", _weight_rows())
    registry = cli_registry()
    detectors = registry.names("landmark_detector")
    _section(
        "components",
        [
            ("registered", str(len(list(registry.entries())))),
            (
                "landmark detectors",
                ", ".join(detectors) or "none: 'preprocess' needs invertavatar-faceverse[mediapipe]",
            ),
        ],
    )
    for problem in registry.problems:
        print(f"\nwarning: {problem}")
    return 0
