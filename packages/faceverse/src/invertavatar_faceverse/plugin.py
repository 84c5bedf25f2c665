"""Hook implementations only: registers every component and command of invertavatar-faceverse."""

import importlib
import importlib.util

from invertavatar_core import hookimpl

__all__: list[str] = []

COMMANDS = (
    "invertavatar_faceverse.commands.preprocess",
    "invertavatar_faceverse.commands.synth_heads",
    "invertavatar_faceverse.commands.convert_ict",
    "invertavatar_faceverse.commands.convert_faceverse",
)
"""Command modules, each with ``register(subparsers, groups)``."""


@hookimpl
def invertavatar_register_morphable_models(registrar) -> None:
    """The procedural head (no data file), ICT Face Model Light and FaceVerse v3.1."""
    # Imported here: loading the plugin (e.g. to build the command line) must not import torch models.
    from invertavatar_faceverse.faceverse import FaceVerseModel, FaceVerseModelConfig
    from invertavatar_faceverse.ict import IctFaceModel, IctFaceModelConfig
    from invertavatar_faceverse.procedural import ProceduralHeadModel, ProceduralHeadModelConfig

    registrar.add(
        "procedural",
        ProceduralHeadModel,
        ProceduralHeadModelConfig,
        description="Head generated in code: closed mesh, UVs, 48 identity modes, 25 named blendshapes, eyes",
        tiny={"rows": 56, "columns": 48, "mouth_rows": 2, "eye_rings": 6, "eye_segments": 12},
    )
    registrar.add(
        "ict",
        IctFaceModel,
        IctFaceModelConfig,
        description="ICT Face Model Light (MIT): user-supplied FaceXModel folder or converted npz",
    )
    registrar.add(
        "faceverse",
        FaceVerseModel,
        FaceVerseModelConfig,
        description="FaceVerse v3.1 (user-supplied model dict), the model InvertAvatar fits",
    )


@hookimpl
def invertavatar_register_landmark_detectors(registrar) -> None:
    """MediaPipe FaceMesh, only where the ``mediapipe`` extra is installed."""
    if importlib.util.find_spec("mediapipe") is None:
        return
    from invertavatar_faceverse.mediapipe_detector import MediaPipeLandmarkDetector, MediaPipeLandmarkDetectorConfig

    registrar.add(
        "mediapipe",
        MediaPipeLandmarkDetector,
        MediaPipeLandmarkDetectorConfig,
        description="MediaPipe FaceMesh: 478 landmarks with refined irises, static-image mode",
    )


@hookimpl
def invertavatar_add_commands(subparsers, groups) -> None:
    """``preprocess``, ``synth-heads``, ``convert ict`` and ``convert faceverse`` (with their old hidden spellings)."""
    for module in COMMANDS:
        importlib.import_module(module).register(subparsers, groups)
