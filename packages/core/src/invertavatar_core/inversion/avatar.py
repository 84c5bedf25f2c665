"""An inverted avatar: canonical features plus what is needed to animate and re-render it.

On disk an avatar is a directory::

    AVATAR/avatar.safetensors   ws, texture.<level>, static.<level> (CanonicalFeatures.tensors())
                                and, when known, meta.identity (1, S) source identity coefficients
                                and meta.source_camera (1, 25) the first source frame's camera
    AVATAR/avatar.json          format, version, the prior's config, inverter, frame count

written atomically (a crash leaves the previous avatar or none, never half of one). Animation
reuses the cached features: :meth:`Avatar.animate` runs only ``prior.render`` (face module,
volume rendering, super-resolution), never the encoders or the canonical generators.
"""

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from invertavatar_core.io.atomic import atomic_directory, recover_directory
from invertavatar_core.io.checkpoints import CheckpointError, load_tensors
from invertavatar_core.io.json_files import read_json
from invertavatar_core.plugin.protocols import CanonicalFeatures, Prior, PriorRender
from invertavatar_core.version import __version__

__all__ = ["AVATAR_FILES", "AVATAR_FORMAT", "AVATAR_KIND", "Avatar"]

AVATAR_FORMAT = "invertavatar.avatar"
"""The ``format`` field of ``avatar.json``."""
AVATAR_KIND = "avatar"
"""The kind in an avatar folder's marker file (:data:`invertavatar_core.io.atomic.MARKER_FILE`)."""
_VERSION = 1
_TENSORS = "avatar.safetensors"
_META = "avatar.json"
_IDENTITY = "meta.identity"
_SOURCE_CAMERA = "meta.source_camera"
AVATAR_FILES = (_META, _TENSORS)
"""The files of an avatar folder (what identifies one written before marker files existed)."""


@dataclass(frozen=True)
class Avatar:
    """Canonical features of one (or B) identities, the prior they belong to, and metadata.

    - ``features``: :class:`CanonicalFeatures` with batch B (1 for one avatar);
    - ``prior_config``: the config (as JSON data) of the prior that decodes the features;
    - ``identity``: ``(B, S)`` source identity coefficients of the morphable model, when known
      (needed to re-render a driving expression on the source face);
    - ``frame_count``: frames the avatar was inverted from; ``inverter``: its registry name;
    - ``source_camera``: ``(1, 25)`` EG3D label of the first source frame, when known (the pose
      a cross-identity animation moves relative to).
    """

    features: CanonicalFeatures
    prior_config: Mapping[str, Any]
    identity: Tensor | None = None
    frame_count: int = 1
    inverter: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)
    """More JSON metadata (e.g. source file names, the morphable model's config)."""
    source_camera: Tensor | None = None

    def to(self, device: torch.device | str) -> "Avatar":
        """The same avatar with its tensors on ``device``."""
        features = CanonicalFeatures.from_tensors({k: v.to(device) for k, v in self.features.tensors().items()})
        identity = None if self.identity is None else self.identity.to(device)
        camera = None if self.source_camera is None else self.source_camera.to(device)
        return Avatar(features, self.prior_config, identity, self.frame_count, self.inverter, self.extra, camera)

    def save(self, path: str | Path) -> Path:
        """Write ``path/avatar.safetensors`` and ``path/avatar.json`` atomically; returns ``path``.

        An existing ``path`` is replaced only if it is an avatar we wrote; any other folder raises
        :class:`~invertavatar_core.io.atomic.OutputPathError` and is left as it was.
        """
        from safetensors.torch import save_file

        tensors = {k: v.detach().to("cpu").contiguous() for k, v in self.features.tensors().items()}
        if self.identity is not None:
            tensors[_IDENTITY] = self.identity.detach().to("cpu").contiguous()
        if self.source_camera is not None:
            tensors[_SOURCE_CAMERA] = self.source_camera.detach().to("cpu", torch.float32).contiguous()
        meta = {
            "format": AVATAR_FORMAT,
            "version": _VERSION,
            "invertavatar_version": __version__,
            "prior": dict(self.prior_config),
            "inverter": self.inverter,
            "frame_count": self.frame_count,
            "batch_size": self.features.batch_size,
            "extra": dict(self.extra),
        }
        with atomic_directory(path, AVATAR_KIND, signature=AVATAR_FILES) as tmp:
            save_file(tensors, str(tmp / _TENSORS), metadata={"format": "pt"})
            (tmp / _META).write_text(json.dumps(meta, indent=2, default=str) + "\n", encoding="utf-8")
        return Path(path)

    @classmethod
    def load(cls, path: str | Path, device: torch.device | str = "cpu") -> "Avatar":
        """Read an avatar directory written by :meth:`save`; errors name the file and the field."""
        path = recover_directory(path)
        meta_path, tensor_path = path / _META, path / _TENSORS
        if not path.is_dir():
            raise FileNotFoundError(f"avatar not found: {path} (expected a directory with {_META} and {_TENSORS})")
        if not meta_path.is_file():
            raise CheckpointError(f"{path}: not an avatar (missing {_META})")
        meta = read_json(meta_path, CheckpointError)
        if meta.get("format") != AVATAR_FORMAT:
            raise CheckpointError(f"{meta_path}: field 'format' is {meta.get('format')!r}, expected {AVATAR_FORMAT!r}")
        if meta.get("version") != _VERSION:
            raise CheckpointError(
                f"{meta_path}: field 'version' is {meta.get('version')!r}; this release reads {_VERSION}"
            )
        for key in ("prior", "frame_count"):
            if key not in meta:
                raise CheckpointError(f"{meta_path}: missing field {key!r}")
        if not tensor_path.is_file():
            raise CheckpointError(f"{path}: missing {_TENSORS}")
        tensors, _ = load_tensors(tensor_path, device)
        identity = tensors.pop(_IDENTITY, None)
        source_camera = tensors.pop(_SOURCE_CAMERA, None)
        if source_camera is not None and tuple(source_camera.shape) != (1, 25):
            raise CheckpointError(f"{tensor_path}: {_SOURCE_CAMERA} is {tuple(source_camera.shape)}, expected (1, 25)")
        if "ws" not in tensors or not any(k.startswith("static.") for k in tensors):
            raise CheckpointError(f"{tensor_path}: expected tensors 'ws' and 'static.*', found {sorted(tensors)}")
        return cls(
            features=CanonicalFeatures.from_tensors(tensors),
            prior_config=meta["prior"],
            identity=identity,
            frame_count=int(meta["frame_count"]),
            inverter=str(meta.get("inverter", "")),
            extra=meta.get("extra", {}),
            source_camera=source_camera,
        )

    def check_prior(self, prior: Prior) -> None:
        """Raise a clear error when ``prior``'s shapes do not match these features."""
        info = prior.info
        ws = self.features.ws
        if tuple(ws.shape[1:]) != (info.num_ws, info.w_dim):
            raise ValueError(
                f"avatar ws are {tuple(ws.shape[1:])} but the prior expects ({info.num_ws}, {info.w_dim}); "
                f"the avatar was made with prior config {dict(self.prior_config)}"
            )
        for level in info.texture_levels:
            found = self.features.texture.get(level.name)
            expected = (level.channels, level.resolution, level.resolution)
            if found is None or tuple(found.shape[1:]) != expected:
                got = None if found is None else tuple(found.shape[1:])
                raise ValueError(f"avatar texture level {level.name!r} is {got}, the prior expects {expected}")

    def animate(
        self,
        prior: Prior,
        expression_uv: Float[Tensor, "B 3 Hu Wu"],
        camera: Float[Tensor, "B 25"],
        *,
        neural_resolution: int | None = None,
    ) -> PriorRender:
        """Render the avatar with a driving expression UV render and camera (``prior.render`` only)."""
        self.check_prior(prior)
        return prior.render(self.features, expression_uv, camera, neural_resolution=neural_resolution)

    def render_orbit(
        self,
        prior: Prior,
        expression_uv: Float[Tensor, "1 3 Hu Wu"],
        *,
        frames: int = 60,
        batch_size: int = 8,
        **orbit: float,
    ) -> Iterator[Float[Tensor, "3 H W"]]:
        """Yield ``frames`` images ``(3, H, W)`` along :func:`invertavatar_core.geometry.cameras.orbit_cameras`.

        The expression stays fixed (``expression_uv`` of one frame); ``orbit`` goes to
        ``orbit_cameras`` (``yaw_range``, ``pitch_range``, ``pitch_offset``, radius, ...).
        """
        from invertavatar_core.geometry.cameras import orbit_cameras

        device = self.features.ws.device
        cameras = orbit_cameras(frames, **orbit).to(device=device, dtype=self.features.ws.dtype)
        with torch.no_grad():
            for start in range(0, frames, batch_size):
                camera = cameras[start : start + batch_size]
                expression = expression_uv.to(device).expand(len(camera), -1, -1, -1)
                yield from self.animate(prior, expression, camera).image
