"""Shared fixtures: the installed registry, the shared test assets, fixed seeds, CPU by default."""

import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from invertavatar_core import Registry, build_registry, get_plugin_manager

REPO_ROOT = Path(__file__).resolve().parents[1]
ASSETS_DIR = Path(os.environ.get("INVERTAVATAR_ASSETS", REPO_ROOT.parent / "shared" / "assets"))
"""Real test material (ICT, MediaPipe canonical mesh, portraits, a clip); never part of the project."""

# Tests use tiny models: on 2 shared cores torch's intra-op threads cost more in contention than
# they win (5-400x slower measured), and pytest-xdist already runs one worker per core.
torch.set_num_threads(1)

# Training refuses what its memory estimate says will not fit; tests judge that against the 8 GiB the
# configs are sized for (tests/configs), not against whatever other processes left free at that moment.
os.environ.setdefault("INVERTAVATAR_MEMORY_BUDGET", "8G")
# Commands run in-process (main([...])) apply the CLI's thread policy to this process: keep it at one.
os.environ.setdefault("INVERTAVATAR_THREADS", "1")


@pytest.fixture(autouse=True)
def _seed() -> None:
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture
def without_shape_checker():
    """The jaxtyping/beartype checker off, so a test of the library's own input checks sees what users see."""
    import jaxtyping

    before = jaxtyping.config.jaxtyping_disable
    jaxtyping.config.update("jaxtyping_disable", True)
    yield
    jaxtyping.config.update("jaxtyping_disable", before)


@pytest.fixture(scope="session")
def full_registry() -> Registry:
    """The registry of every installed plugin (entry points loaded)."""
    return build_registry(get_plugin_manager(autoload=True))


@pytest.fixture(scope="session")
def assets_dir() -> Path:
    """``../shared/assets``; tests needing it skip with the reason when it is absent."""
    if not ASSETS_DIR.is_dir():
        pytest.skip(f"shared test assets not found at {ASSETS_DIR} (set INVERTAVATAR_ASSETS)")
    return ASSETS_DIR
