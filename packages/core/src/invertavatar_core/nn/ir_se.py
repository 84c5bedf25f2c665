"""IR-SE-50: the improved-residual squeeze-excitation ResNet of ArcFace, written in plain torch.

One network, three uses: the trunk of E_latent (e4e), the trunk of the E_tex / E_tri UNets (with
7 or 6 input channels), and, with its ArcFace output head, the identity network behind the ID
loss and the CSIM metric. Layout (docs/design/encoders.md): a 3x3 stem conv to 64 channels + BN + PReLU,
then 24 bottleneck-IR-SE units in four stages of 64 / 128 / 256 / 512 channels with 3 / 4 / 14 / 3
units; each stage opens with a stride-2 unit, the SE reduction is 16.

User-supplied weights load with :func:`load_ir_se50_weights`: the widely used
``model_ir_se50.pth`` (TreB1eN/InsightFace_Pytorch layout ``input_layer.*``, ``body.N.*``,
``output_layer.*``, read with ``torch.load(weights_only=True)``) or a safetensors file in either
that layout or ours. Nothing is downloaded.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from invertavatar_core.io.checkpoints import CheckpointError, check_state_dict
from invertavatar_core.io.weight_files import read_state_dict

__all__ = [
    "ArcFaceHead",
    "BottleneckIRSE",
    "IRSEArchitecture",
    "IRSEFeatures",
    "IRSENet",
    "IR_SE_50",
    "SqueezeExcitation",
    "insightface_to_ir_se_keys",
    "load_ir_se50_weights",
]


@dataclass(frozen=True)
class IRSEArchitecture:
    """Widths and depths of an IR-SE network (the defaults are IR-SE-50, docs/design/encoders.md)."""

    stem_channels: int = 64  # input conv 3x3 -> 64
    """Channels of the stem conv."""
    stage_channels: tuple[int, ...] = (64, 128, 256, 512)
    """Output channels of each stage."""
    stage_units: tuple[int, ...] = (3, 4, 14, 3)  # 24 units = IR-SE-50
    """Bottleneck units per stage; the first unit of each stage has stride 2."""
    se_reduction: int = 16
    """Squeeze-excitation channel reduction."""

    def __post_init__(self) -> None:
        if len(self.stage_channels) != len(self.stage_units) or not self.stage_channels:
            raise ValueError(
                f"IRSEArchitecture: stage_channels {self.stage_channels} and stage_units {self.stage_units} "
                "must be non-empty and of equal length"
            )
        if min(self.stage_units) < 1 or self.se_reduction < 1:
            raise ValueError(f"IRSEArchitecture: every stage needs >= 1 unit and se_reduction >= 1, got {self}")

    @property
    def stride(self) -> int:
        """Total downsampling of the last stage (16 for four stages)."""
        return 2 ** len(self.stage_channels)


IR_SE_50 = IRSEArchitecture()
"""The paper's trunk (supplement 6.3): 30.95 M parameters with a 3-channel input (docs/design/encoders.md)."""


@dataclass(frozen=True)
class IRSEFeatures:
    """Feature taps of one forward pass.

    - ``stages[s]``: output of stage ``s``, ``(B, C_s, R / 2^(s+1), R / 2^(s+1))``;
    - ``first_units[s]``: output of stage ``s``'s first (stride-2) unit, same shape as ``stages[s]``
      (the UNets take their deepest skip from the first unit of the last stage, docs/design/encoders.md).
    """

    stages: tuple[Tensor, ...]
    first_units: tuple[Tensor, ...]


class SqueezeExcitation(nn.Module):
    """Channel gating: ``x * sigmoid(fc2(relu(fc1(avgpool(x)))))``; ``x: (B, C, H, W)``."""

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)  # tiny widths would otherwise round to zero
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=False)
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=False)

    def forward(self, x: Float[Tensor, "B C H W"]) -> Float[Tensor, "B C H W"]:
        """Gate the channels of ``x``."""
        gate = self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(x, 1))))
        return x * torch.sigmoid(gate)


class BottleneckIRSE(nn.Module):
    """One IR-SE unit: ``residual(x) + shortcut(x)``, stride applied in the second conv.

    residual = BN -> conv3x3 -> PReLU -> conv3x3 (stride) -> BN -> SE; shortcut = identity
    (subsampled when strided) or conv1x1 (stride) + BN when the width changes.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, se_reduction: int) -> None:
        super().__init__()
        if in_channels == out_channels:
            # A 1x1 max-pool with stride = plain subsampling; keeps the upstream layout parameter-free.
            self.shortcut: nn.Module = nn.MaxPool2d(1, stride) if stride > 1 else nn.Identity()
        else:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
            )
        self.residual = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, out_channels, 3, 1, 1, bias=False),
            nn.PReLU(out_channels),
            nn.Conv2d(out_channels, out_channels, 3, stride, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            SqueezeExcitation(out_channels, se_reduction),
        )

    def forward(self, x: Float[Tensor, "B Ci H W"]) -> Float[Tensor, "B Co Ho Wo"]:
        """``(B, C_in, H, W) -> (B, C_out, H / stride, W / stride)``."""
        return self.residual(x) + self.shortcut(x)


class ArcFaceHead(nn.Sequential):
    """ArcFace output layer: BN2d -> dropout -> flatten -> linear -> BN1d.

    ``(B, C, r, r) -> (B, embedding_dim)`` un-normalised identity embedding; ``r`` is the last
    stage's resolution (7 for the 112x112 input the public weights were trained at).
    """

    def __init__(self, channels: int, resolution: int, embedding_dim: int = 512, dropout: float = 0.6) -> None:
        super().__init__(
            nn.BatchNorm2d(channels),
            nn.Dropout(dropout),
            nn.Flatten(),
            nn.Linear(channels * resolution * resolution, embedding_dim),
            nn.BatchNorm1d(embedding_dim),
        )


class IRSENet(nn.Module):
    """IR-SE network returning per-stage taps, with an optional ArcFace identity head.

    Args:
        architecture: widths and depths (:data:`IR_SE_50` by default).
        in_channels: channels of the input (3 for images, 7 for E_tex, 6 for E_tri).
        head_resolution: input resolution the ArcFace head is built for (112 for the public
            ``model_ir_se50.pth``); ``None`` builds no head (trunk only).
        embedding_dim: identity embedding width (512).
        dropout: dropout inside the head (0.6 as the public weights were trained; inactive in eval).

    Example:
        >>> net = IRSENet(in_channels=7)  # E_tex trunk
        >>> feats = net(torch.randn(1, 7, 256, 256))  # doctest: +SKIP
        >>> [f.shape[-1] for f in feats.stages]  # doctest: +SKIP
        [128, 64, 32, 16]
    """

    def __init__(
        self,
        architecture: IRSEArchitecture = IR_SE_50,
        in_channels: int = 3,
        *,
        head_resolution: int | None = None,
        embedding_dim: int = 512,
        dropout: float = 0.6,
    ) -> None:
        super().__init__()
        self.architecture = architecture
        self.in_channels = in_channels
        a = architecture
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, a.stem_channels, 3, 1, 1, bias=False),
            nn.BatchNorm2d(a.stem_channels),
            nn.PReLU(a.stem_channels),
        )
        stages = []
        width = a.stem_channels
        for channels, units in zip(a.stage_channels, a.stage_units, strict=True):
            blocks = [BottleneckIRSE(width, channels, 2, a.se_reduction)]
            blocks += [BottleneckIRSE(channels, channels, 1, a.se_reduction) for _ in range(units - 1)]
            stages.append(nn.Sequential(*blocks))
            width = channels
        self.stages = nn.ModuleList(stages)
        self.head: ArcFaceHead | None = None
        self.head_resolution = head_resolution
        if head_resolution is not None:
            if head_resolution % a.stride:
                raise ValueError(f"IRSENet: head_resolution must be a multiple of {a.stride}, got {head_resolution}")
            self.head = ArcFaceHead(width, head_resolution // a.stride, embedding_dim, dropout)

    @property
    def out_channels(self) -> tuple[int, ...]:
        """Channels of each stage's output."""
        return tuple(self.architecture.stage_channels)

    def forward(self, x: Float[Tensor, "B Ci H W"]) -> IRSEFeatures:
        """``x: (B, in_channels, H, W)`` with H, W multiples of 16 -> :class:`IRSEFeatures`."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"IRSENet expects (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        stride = self.architecture.stride
        if x.shape[-1] % stride or x.shape[-2] % stride:
            raise ValueError(
                f"IRSENet: input height and width must be multiples of {stride}, got {tuple(x.shape[-2:])}"
            )
        # The prior's renders come channels-last; with that layout the CPU backward of torch 2.13's strided
        # 1x1 shortcut convolution corrupts the heap (a crash at 128 px and up), so the trunk runs in NCHW.
        x = self.stem(x.contiguous())
        stages, first_units = [], []
        for stage in self.stages:
            x = stage[0](x)
            first_units.append(x)
            for block in stage[1:]:
                x = block(x)
            stages.append(x)
        return IRSEFeatures(stages=tuple(stages), first_units=tuple(first_units))

    def embed(self, image: Float[Tensor, "B 3 R R"]) -> Float[Tensor, "B E"]:
        """Identity embedding, L2-normalised: ``image (B, 3, r, r)`` in [-1, 1], r = head_resolution.

        The public weights expect an aligned face crop at 112x112, RGB in [-1, 1]; cropping and
        resizing are the caller's (the ID loss and CSIM decide their crop).
        """
        if self.head is None:
            raise RuntimeError("IRSENet.embed needs the ArcFace head: build with head_resolution=112")
        size = self.head_resolution
        if image.shape[-2:] != (size, size):
            raise ValueError(f"IRSENet.embed expects ({size}, {size}) images, got {tuple(image.shape[-2:])}")
        return F.normalize(self.head(self(image).stages[-1]), dim=1)


# --------------------------------------------------------------------------------------------
# Loading user-supplied weights
# --------------------------------------------------------------------------------------------

_WRAPPER_PREFIXES = ("module.", "encoder.", "facenet.", "backbone.")
"""Prefixes that training wrappers put in front of the backbone's keys (DDP, pSp/e4e, ID loss)."""


def insightface_to_ir_se_keys(
    state: Mapping[str, Tensor], architecture: IRSEArchitecture = IR_SE_50
) -> dict[str, Tensor]:
    """Rename a TreB1eN/InsightFace_Pytorch ``Backbone`` state dict to :class:`IRSENet` names.

    ``input_layer.i`` -> ``stem.i``; ``body.N.shortcut_layer`` / ``res_layer`` ->
    ``stages.s.u.shortcut`` / ``residual`` (N counts units across stages); ``output_layer.i`` ->
    ``head.i``. Keys already in our layout pass through; unknown keys are kept as they are so the
    strict load names them.
    """
    return {_ir_se_name(key, architecture): value for key, value in state.items()}


_BODY = re.compile(r"^body\.(\d+)\.(shortcut_layer|res_layer)\.(.*)$")


def _ir_se_name(key: str, architecture: IRSEArchitecture) -> str:
    """Our name for one InsightFace-layout key (unchanged when it is not one)."""
    if key.startswith("input_layer."):
        return "stem." + key.removeprefix("input_layer.")
    if key.startswith("output_layer."):
        return "head." + key.removeprefix("output_layer.")
    match = _BODY.match(key)
    if match is None:
        return key
    index, part, rest = int(match.group(1)), match.group(2), match.group(3)
    for stage, units in enumerate(architecture.stage_units):
        if index < units:
            return f"stages.{stage}.{index}.{'shortcut' if part == 'shortcut_layer' else 'residual'}.{rest}"
        index -= units
    return key


def _strip_wrappers(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Keep the backbone of a wrapped state dict (``module.encoder.body.0...`` -> ``body.0...``)."""
    roots = ("input_layer.", "body.", "output_layer.", "stem.", "stages.", "head.")
    state = dict(state)
    while not any(k.startswith(roots) for k in state):
        prefix = next((p for p in _WRAPPER_PREFIXES if any(k.startswith(p) for k in state)), None)
        if prefix is None:
            break
        state = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
    return state


def load_ir_se50_weights(module: IRSENet, path: str | Path, *, adapt_input_channels: bool = False) -> IRSENet:
    """Load user-supplied IR-SE-50 weights into ``module`` strictly.

    Args:
        module: the network to fill. Without a head, the file's head tensors are not used (the
            trunk of e4e and the UNets is initialised from the face-recognition backbone).
        path: ``model_ir_se50.pth`` (TreB1eN/InsightFace_Pytorch layout, read with
            ``weights_only=True``) or a ``.safetensors`` file in that layout or ours.
        adapt_input_channels: when the module's stem takes more (or fewer) channels than the file,
            copy the file's filters into the shared leading channels and zero the others, so a
            7-channel E_tex trunk starts as the RGB network on its first three channels.

    Returns:
        ``module``, loaded.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointError: unreadable file, or missing / unexpected / mis-shaped tensors (all named).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"IR-SE-50 weights not found: {path} (supply model_ir_se50.pth from TreB1eN/InsightFace_Pytorch "
            "or a converted .safetensors file; nothing is downloaded)"
        )
    raw = _strip_wrappers(read_state_dict(path, "IR-SE-50 weights (e.g. model_ir_se50.pth)"))
    state = insightface_to_ir_se_keys(raw, module.architecture)
    original = {_ir_se_name(k, module.architecture): k for k in raw}  # our name -> the file's, for messages
    if module.head is None:
        state = {k: v for k, v in state.items() if not k.startswith("head.")}
    expected = module.state_dict()
    # Files saved by PyTorch < 0.4.1 (the public model_ir_se50.pth) carry no BN step counters.
    for key, value in expected.items():
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = torch.zeros_like(value)
    stem = "stem.0.weight"
    if adapt_input_channels and stem in state and state[stem].shape[1] != expected[stem].shape[1]:
        source, target = state[stem], expected[stem]
        if source.shape[0] != target.shape[0] or source.shape[2:] != target.shape[2:]:
            raise CheckpointError(f"{path}: {stem} {tuple(source.shape)} cannot be adapted to {tuple(target.shape)}")
        adapted = torch.zeros_like(target)
        shared = min(source.shape[1], target.shape[1])
        adapted[:, :shared] = source[:, :shared]
        state[stem] = adapted
    try:
        check_state_dict(expected, {k: tuple(v.shape) for k, v in state.items()}, f"IR-SE-50 weights {path}")
    except CheckpointError as exc:
        renamed = sorted(f"{original[k]} -> {k}" for k in set(state) - set(expected) if original.get(k, k) != k)
        if renamed:
            raise CheckpointError(f"{exc}\n  unexpected tensors as named in the file: {', '.join(renamed)}") from None
        raise
    module.load_state_dict(state, strict=True)
    return module
