"""What ``invertavatar preprocess`` keeps in the dataset folder so that an interrupted run resumes.

``tracks/<seq>.safetensors``: the face track of pass 1 (every used frame: its number, the chosen
face's landmarks in frame pixels or NaN, the number of faces seen, why none was taken), saved
every few hundred frames and at the end of the pass. ``tracks/<seq>.fit.safetensors``: the fit of
the sequence's frames (every field of :class:`~invertavatar_faceverse.fitting.FitResult`, the
frame numbers, the smoothed crop boxes and the landmarks in crop pixels). Each file records, in
its safetensors metadata, the content key of the input and the settings it was made from; a file
with another key is ignored and replaced, so nothing stale is ever reused. Neither file is read
by training or evaluation.
"""

import json
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file
from torch import Tensor

from invertavatar_core.io.atomic import atomic_write

__all__ = ["FaceTrack", "TRACK_REASONS", "load_fit", "save_fit", "track_path"]

TRACK_FORMAT = "invertavatar-track"
"""``format`` in the metadata of both files."""
TRACK_REASONS = ("", "no face", "fewer faces than --face-index", "followed face lost", "unreadable image")
"""Why pass 1 took no face in a frame, by the code stored in ``reason`` (0: a face was taken)."""


def track_path(root: str | Path, sequence: str, fit: bool = False) -> Path:
    """``root/tracks/<sequence>.safetensors`` (the track) or ``.fit.safetensors`` (the fit)."""
    return Path(root) / "tracks" / f"{sequence}{'.fit' if fit else ''}.safetensors"


def _metadata(path: Path) -> dict[str, str] | None:
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as handle:
            return handle.metadata() or {}
    except (SafetensorError, OSError):
        return None


@dataclass
class FaceTrack:
    """Pass 1 of one sequence so far: per used frame, its number, landmarks, faces seen and reason code.

    ``landmarks`` are ``(478, 2)`` float32 frame pixels (NaN where no face was taken);
    ``complete`` says whether every used frame has been seen.
    """

    frames: list[int] = field(default_factory=list)
    landmarks: list[Tensor] = field(default_factory=list)
    faces: list[int] = field(default_factory=list)
    reasons: list[int] = field(default_factory=list)
    complete: bool = False

    def add(self, frame: int, landmarks: Tensor | None, faces: int, reason: str) -> None:
        """Record one frame (``landmarks`` None: no face taken, ``reason`` one of :data:`TRACK_REASONS`)."""
        self.frames.append(frame)
        self.landmarks.append(torch.full((478, 2), float("nan")) if landmarks is None else landmarks.float().cpu())
        self.faces.append(faces)
        self.reasons.append(TRACK_REASONS.index(reason))

    def found(self) -> list[int]:
        """Positions (in :attr:`frames`) of the frames where a face was taken."""
        return [k for k, code in enumerate(self.reasons) if code == 0]

    def save(self, path: str | Path, key: str) -> None:
        """Write the track so far atomically, tagged with ``key``."""
        tensors = {
            "frames": torch.tensor(self.frames, dtype=torch.int64),
            "landmarks": torch.stack(self.landmarks) if self.landmarks else torch.zeros(0, 478, 2),
            "faces": torch.tensor(self.faces, dtype=torch.int32),
            "reasons": torch.tensor(self.reasons, dtype=torch.int32),
        }
        metadata = {"format": TRACK_FORMAT, "key": key, "complete": "1" if self.complete else "0"}
        atomic_write(Path(path), lambda tmp: save_file(tensors, str(tmp), metadata=metadata))

    @classmethod
    def load(cls, path: str | Path, key: str) -> "FaceTrack | None":
        """The track saved at ``path`` if it was made with ``key`` (else None: start again)."""
        meta = _metadata(Path(path))
        if meta is None or meta.get("format") != TRACK_FORMAT or meta.get("key") != key:
            return None
        tensors = load_file(str(path))
        return cls(
            frames=tensors["frames"].tolist(),
            landmarks=list(tensors["landmarks"].unbind(0)),
            faces=tensors["faces"].tolist(),
            reasons=tensors["reasons"].tolist(),
            complete=meta.get("complete") == "1",
        )


def save_fit(path: str | Path, key: str, result, extra: dict[str, Tensor]) -> None:
    """Write a FitResult and ``extra`` tensors (frame numbers, boxes, ...) tagged with ``key``.

    Tensor fields are stored as tensors, the per-frame ``quality`` (flags and reasons) as JSON in
    the metadata.
    """
    tensors = {f"result.{f.name}": getattr(result, f.name) for f in fields(result)}
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items() if isinstance(v, Tensor)}
    tensors.update({k: v.detach().cpu().contiguous() for k, v in extra.items()})
    metadata = {"format": TRACK_FORMAT, "key": key, "fields": ",".join(f.name for f in fields(result))}
    quality = getattr(result, "quality", ())
    metadata["quality"] = json.dumps([[list(q.flags), list(q.reasons)] for q in quality])
    atomic_write(Path(path), lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def load_fit(path: str | Path, key: str, result_type) -> tuple[object, dict[str, Tensor]] | None:
    """``(result_type(...), extra tensors)`` saved at ``path`` with ``key``, or None (absent, stale, other fields)."""
    from invertavatar_faceverse.fit_quality import FrameQuality

    meta = _metadata(Path(path))
    if meta is None or meta.get("format") != TRACK_FORMAT or meta.get("key") != key:
        return None
    if meta.get("fields") != ",".join(f.name for f in fields(result_type)):
        return None  # the FitResult of another version: fit again
    tensors = load_file(str(path))
    values: dict[str, object] = {k.removeprefix("result."): v for k, v in tensors.items() if k.startswith("result.")}
    if "quality" in {f.name for f in fields(result_type)}:
        values["quality"] = tuple(FrameQuality(tuple(f), tuple(r)) for f, r in json.loads(meta.get("quality", "[]")))
    extra = {k: v for k, v in tensors.items() if not k.startswith("result.")}
    # Fields saved as None (the eyes of a model without them) come back as None.
    return result_type(**{f.name: values.get(f.name) for f in fields(result_type)}), extra
