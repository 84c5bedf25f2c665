"""The interfaces every swappable component satisfies, and the small records they exchange.

Components are structural (``typing.Protocol``): a third-party class needs no base class, only
these attributes and methods. The conformance kit in :mod:`invertavatar_core.testing` checks
behaviour. Conventions used throughout (see :mod:`invertavatar_core.tensor_types`):

- images are float RGB in [-1, 1], NCHW; the prior returns them in that range and conversion to
  uint8 happens only when writing files;
- cameras are EG3D labels ``(B, 25)``: a flattened 4x4 OpenCV cam-to-world matrix (x right,
  y down, z forward in camera space) followed by a flattened 3x3 intrinsics matrix normalised by
  the image size (focal 4.2647, principal point 0.5 for the FFHQ convention);
- canonical (tri-plane) space is EG3D's: the head sits in the box [-0.5, 0.5]^3 and faces +z,
  cameras orbit at radius 2.7 around the pivot (0, 0, 0.2);
- the *expression UV render* is the orthographic render of the pose-free mesh, placed in
  tri-plane space, whose pixels carry (u, v, face mask): u, v in [-1, 1], mask in {0, 1}; its
  pixel grid covers the face window of plane 0 (rows 57-184, cols 64-191 of a 256 plane) at
  twice that plane's resolution. Head pose lives in the camera; expression lives only here;
- a *UV unwrap* maps each texel of UV space to the image position that sees it: a grid
  ``(B, Ht, Wt, 2)`` in [-1, 1] (``grid_sample`` convention, ``align_corners=False``) with a
  visibility map ``(B, 1, Ht, Wt)`` in [0, 1] (front-facing times face mask).
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, runtime_checkable

from invertavatar_core.tensor_types import Bool, Float, Int, Tensor

if TYPE_CHECKING:  # only for annotations: these modules import this one
    from invertavatar_core.evaluation.protocols.base import ModelUnderTest
    from invertavatar_core.evaluation.report import EvaluationReport
    from invertavatar_core.plugin.registry import Registry

__all__ = [
    "Aggregator",
    "AggregatorState",
    "CanonicalFeatures",
    "Encoder",
    "EncoderRole",
    "EncoderState",
    "EvaluationJob",
    "EvaluationProtocol",
    "FeatureEdits",
    "FeatureEncoder",
    "FeatureLevel",
    "Fragments",
    "LandmarkDetector",
    "LatentEncoder",
    "Metric",
    "MorphableModel",
    "Prior",
    "PriorFeatureInfo",
    "PriorRender",
    "Rasterizer",
    "VolumetricPrior",
]

AggregatorState = dict[str, Tensor]
"""An aggregator's explicit state: a flat mapping of tensors, so it saves to safetensors as is."""

EncoderState = dict[str, Tensor]
"""A feature encoder's streaming state: flat tensors (per-level aggregator states, prefixed)."""

EncoderRole = Literal["latent", "texture", "static"]
"""What an encoder predicts: w+ offsets, texture-feature offsets, or static tri-plane edits."""


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureLevel:
    """One level of a feature pyramid: its name, channel count and square resolution."""

    name: str
    channels: int
    resolution: int


@dataclass(frozen=True)
class PriorFeatureInfo:
    """Shapes a prior exposes as data, so encoders and aggregators are built to match it.

    ``texture_levels`` are the levels of the canonical texture ``F_tex`` that a texture encoder
    offsets (paper: 32, 64, 128); ``sft_levels`` are the CS-SFT points of the static generator
    (channels = the modulated half); ``triplane_*`` give the tri-plane ``(3, C, R, R)``.
    """

    num_ws: int
    w_dim: int
    z_dim: int
    c_dim: int
    image_resolution: int
    neural_resolution: int
    uv_resolution: int
    texture_levels: tuple[FeatureLevel, ...]
    sft_levels: tuple[FeatureLevel, ...]
    triplane_channels: int
    triplane_resolution: int


@dataclass(frozen=True)
class FeatureEdits:
    """What the fine-stage encoders hand to the prior; every field is optional.

    - ``texture_offsets``: name -> ``(B, C, R, R)`` added to the matching ``F_tex`` level;
    - ``static_sft``: name -> ``(scale, shift)``, each ``(B, C, R, R)``, applied as
      ``x * scale + shift`` to the modulated half of the static generator at that level
      (multiplicative as given, not ``1 + scale``);
    - ``triplane_offset``: ``(B, 3, C, R, R)`` added to the static tri-plane (an ablation).
    """

    # Levels differ in C and R: only the batch is shared (a leading "_" leaves a dimension unchecked).
    texture_offsets: dict[str, Float[Tensor, "B _C _R _R"]] = field(default_factory=dict)
    static_sft: dict[str, tuple[Float[Tensor, "B _C _R _R"], Float[Tensor, "B _C _R _R"]]] = field(default_factory=dict)
    triplane_offset: Float[Tensor, "B 3 C R R"] | None = None

    def merge(self, other: "FeatureEdits") -> "FeatureEdits":
        """Combine edits from two encoders; a level set by both is an error."""
        clash = (self.texture_offsets.keys() & other.texture_offsets.keys()) | (
            self.static_sft.keys() & other.static_sft.keys()
        )
        if clash or (self.triplane_offset is not None and other.triplane_offset is not None):
            raise ValueError(f"two encoders edit the same feature levels: {sorted(clash) or ['triplane']}")
        return FeatureEdits(
            texture_offsets={**self.texture_offsets, **other.texture_offsets},
            static_sft={**self.static_sft, **other.static_sft},
            triplane_offset=self.triplane_offset if self.triplane_offset is not None else other.triplane_offset,
        )


@dataclass(frozen=True)
class CanonicalFeatures:
    """An avatar's pose- and expression-free representation; the cache that animation reuses.

    - ``ws``: ``(B, K, D)`` w+ (G_face is still driven by it at animation time);
    - ``texture``: ``F_tex``, name -> ``(B, C, R, R)`` in UV space (all levels the prior needs);
    - ``static``: ``F_tri``, name -> ``(B, C, R, R)``; must contain ``"triplane"``
      ``(B, 3 * C, R, R)`` and whatever static levels the face module blends with.
    """

    ws: Float[Tensor, "B K D"]
    texture: dict[str, Float[Tensor, "B _C _R _R"]]
    static: dict[str, Float[Tensor, "B _C _R _R"]]

    @property
    def batch_size(self) -> int:
        """Number of avatars held."""
        return int(self.ws.shape[0])

    def tensors(self) -> dict[str, Tensor]:
        """Flat name -> tensor mapping (``ws``, ``texture.<level>``, ``static.<level>``)."""
        out = {"ws": self.ws}
        out.update({f"texture.{k}": v for k, v in self.texture.items()})
        out.update({f"static.{k}": v for k, v in self.static.items()})
        return out

    @classmethod
    def from_tensors(cls, tensors: dict[str, Tensor]) -> "CanonicalFeatures":
        """Inverse of :meth:`tensors`."""
        texture = {k.removeprefix("texture."): v for k, v in tensors.items() if k.startswith("texture.")}
        static = {k.removeprefix("static."): v for k, v in tensors.items() if k.startswith("static.")}
        return cls(ws=tensors["ws"], texture=texture, static=static)


@dataclass(frozen=True)
class PriorRender:
    """One render of an avatar: final image, raw neural render, feature image, depth.

    - ``image``: ``(B, 3, Hi, Wi)`` in [-1, 1] after super-resolution;
    - ``raw``: ``(B, 3, Hn, Wn)`` in [-1, 1], the first three channels of ``feature_image``;
    - ``feature_image``: ``(B, C, Hn, Wn)`` volume-rendered features;
    - ``depth``: ``(B, 1, Hn, Wn)`` expected ray depth in world units;
    - ``triplane``: ``(B, 3, C, R, R)`` the animated tri-plane that was rendered.
    """

    image: Float[Tensor, "B 3 Hi Wi"]
    raw: Float[Tensor, "B 3 Hn Wn"]
    feature_image: Float[Tensor, "B C Hn Wn"]
    depth: Float[Tensor, "B 1 Hn Wn"]
    triplane: Float[Tensor, "B 3 Ct R R"]


@dataclass(frozen=True)
class Fragments:
    """Per-pixel rasterisation result.

    - ``triangle_id``: ``(B, H, W)`` int64, index into ``faces``; -1 where no triangle covers;
    - ``barycentrics``: ``(B, H, W, 3)`` perspective-correct, differentiable w.r.t. positions;
    - ``depth``: ``(B, H, W)`` interpolated clip-space z / w; +inf where no triangle covers.
    """

    triangle_id: Int[Tensor, "B H W"]
    barycentrics: Float[Tensor, "B H W 3"]
    depth: Float[Tensor, "B H W"]

    @property
    def mask(self) -> Bool[Tensor, "B H W"]:
        """``(B, H, W)`` bool, pixels covered by a triangle."""
        return self.triangle_id >= 0


# --------------------------------------------------------------------------------------------
# Components
# --------------------------------------------------------------------------------------------


@runtime_checkable
class Prior(Protocol):
    """The animatable 3D GAN prior (paper Sec. 3.1): w+ -> canonical features -> renders.

    Stateless apart from its weights; ``render`` never mutates ``features``. Batch rule for
    ``render``: ``features`` holds 1 or B avatars; one avatar is broadcast over B frames.
    """

    info: PriorFeatureInfo
    """Shapes of everything the prior consumes and produces."""

    @property
    def w_avg(self) -> Float[Tensor, " D"]:
        """``(D,)`` mean of the mapping network's output (truncation centre, e4e offset base)."""
        ...

    def mapping(
        self, z: Float[Tensor, "B Z"], camera: Float[Tensor, "B 25"], truncation_psi: float = 1.0
    ) -> Float[Tensor, "B K D"]:
        """``z: (B, z_dim)``, ``camera: (B, 25)`` -> ``ws: (B, K, D)``."""
        ...

    def canonical(self, ws: Float[Tensor, "B K D"], edits: FeatureEdits | None = None) -> CanonicalFeatures:
        """``ws: (B, K, D)`` (+ encoder edits) -> canonical features ``F_tex``, ``F_tri``."""
        ...

    def render(
        self,
        features: CanonicalFeatures,
        expression_uv: Float[Tensor, "B 3 Hu Wu"],
        camera: Float[Tensor, "B 25"],
        *,
        neural_resolution: int | None = None,
    ) -> PriorRender:
        """Animate and render: ``expression_uv: (B, 3, Hu, Wu)``, ``camera: (B, 25)``.

        Runs only the face module, the volume renderer and super-resolution.
        """
        ...

    def build_discriminator(self) -> Any:
        """A discriminator matched to this prior's renders (an ``nn.Module``).

        ``D(image (B, 3, Hi, Wi), raw (B, 3, Hn, Wn), camera (B, 25) | None) -> (B, 1)`` logits;
        ``camera=None`` means unconditioned (the encoder stages zero the camera).
        """
        ...


@runtime_checkable
class VolumetricPrior(Prior, Protocol):
    """A prior whose animated avatar is a density and colour field that can be queried at 3D points.

    What mesh export needs (:mod:`invertavatar_core.geometry.avatar_mesh`). The field lives in
    canonical space inside the cube ``[-box_size/2, box_size/2]^3``; ``animate`` gives the
    per-expression representation (for a tri-plane prior: the animated tri-planes) that
    ``query_field`` reads.
    """

    @property
    def box_size(self) -> float:
        """Side of the cube that holds the field, in canonical units."""
        ...

    @property
    def sample_spacing(self) -> float:
        """Distance between the renderer's (stratified) samples along a ray, in canonical units."""
        ...

    def animate(self, features: CanonicalFeatures, expression_uv: Float[Tensor, "B 3 Hu Wu"]) -> Tensor:
        """The field of each of ``B`` expressions (``features`` hold 1 or B avatars)."""
        ...

    def query_field(self, field: Tensor, points: Float[Tensor, "B N 3"]) -> tuple[Tensor, Tensor]:
        """``points (B, N, 3)`` -> density ``sigma (B, N, 1) >= 0`` and RGB ``(B, N, 3)`` in [0, 1].

        ``sigma`` is the physical density the renderer integrates (opacity ``1 - exp(-sigma * length)``);
        the RGB is what it composites into the raw image :attr:`PriorRender.raw`.
        """
        ...


@runtime_checkable
class Encoder(Protocol):
    """Anything the inversion pipeline encodes with; ``role`` says which interface follows."""

    role: ClassVar[EncoderRole]
    input_channels: int
    """Channels of one frame's input (3 for latent, 7 for texture, 6 for static)."""
    input_resolution: int
    """Square input resolution the encoder expects (256 at paper scale)."""


@runtime_checkable
class LatentEncoder(Encoder, Protocol):
    """Coarse stage (E_latent): one image -> w+ offsets from the prior's ``w_avg``."""

    def __call__(self, image: Float[Tensor, "B 3 R R"]) -> Float[Tensor, "B K D"]:
        """``image: (B, 3, R, R)`` in [-1, 1] -> ``(B, K, D)``; the pipeline adds ``w_avg``."""
        ...


@runtime_checkable
class FeatureEncoder(Encoder, Protocol):
    """Fine stage (E_tex / E_tri, one-shot or recurrent): frames -> :class:`FeatureEdits`.

    Streaming and batch share one mechanism: ``forward(x)`` equals
    ``read(fold(update, x[:, t] for t in range(T), init_state(...)))``. The state is explicit
    and flat, so a session can be saved and restored. A one-shot encoder keeps only the last
    frame; a recurrent one aggregates each decoder level with its aggregator.

    Inputs per frame: texture role ``(B, 7, R, R)`` = UV unwrap of the image (3), of the
    residual ``I - I_hat`` with -1 where unseen (3), visibility (1); static role
    ``(B, 6, R, R)`` = image (3) and residual (3) in image space.
    """

    def init_state(self, batch_size: int, device=None, dtype=None) -> EncoderState:
        """An empty state for ``batch_size`` sequences."""
        ...

    def update(self, state: EncoderState, frame: Float[Tensor, "B Cin R R"]) -> EncoderState:
        """Fold one frame ``(B, C_in, R, R)`` into the state; returns the new state."""
        ...

    def read(self, state: EncoderState) -> FeatureEdits:
        """Edits predicted from everything folded in so far."""
        ...

    def __call__(self, frames: Float[Tensor, "B T Cin R R"]) -> FeatureEdits:
        """Whole sequence ``(B, T, C_in, R, R)`` -> edits (same result as streaming)."""
        ...


@runtime_checkable
class Aggregator(Protocol):
    """Fuses per-frame feature maps of one identity into one map (paper Sec. 3.3).

    Two faces of one mechanism: an explicit state ``init_state`` / ``update`` / ``read``, and a
    whole-sequence call ``(B, T, C, H, W) -> (B, C, H, W)`` that folds ``update`` over T. The
    state is a flat dict of tensors; ``update`` is pure (returns a new dict). Reading after one
    frame is valid. Built with ``channels`` = C of the level it serves.
    """

    channels: int

    def init_state(self, like: Float[Tensor, "B C H W"]) -> AggregatorState:
        """Empty state shaped for frames like ``like: (B, C, H, W)``."""
        ...

    def update(self, state: AggregatorState, frame: Float[Tensor, "B C H W"]) -> AggregatorState:
        """Fold one frame ``(B, C, H, W)`` in."""
        ...

    def read(self, state: AggregatorState) -> Float[Tensor, "B C H W"]:
        """The fused map ``(B, C, H, W)``."""
        ...

    def __call__(self, frames: Float[Tensor, "B T C H W"]) -> Float[Tensor, "B C H W"]:
        """``(B, T, C, H, W) -> (B, C, H, W)``."""
        ...


@runtime_checkable
class MorphableModel(Protocol):
    """A linear face model: vertices from identity, expression (and eye) coefficients.

    Model space is the model's own (units and axes as loaded); ``to_canonical`` is the fixed
    4x4 similarity that places the pose-free mesh in EG3D tri-plane space so that the face
    fills the face window of plane 0. Expression coefficients are blendshape-like weights.
    """

    n_vertices: int
    n_identity: int
    n_expression: int
    n_eye: int
    """Eye-rotation coefficients (0 when the model has no separate eyeballs)."""
    expression_names: tuple[str, ...]

    @property
    def faces(self) -> Int[Tensor, "F 3"]:
        """``(F, 3)`` int64 triangle vertex indices."""
        ...

    @property
    def uvs(self) -> Float[Tensor, "N 2"]:
        """``(N, 2)`` per-vertex UV in [0, 1] (v up, as in OBJ files)."""
        ...

    @property
    def face_mask(self) -> Float[Tensor, " N"]:
        """``(N,)`` float, 1 on the face region (eyes included) that the texture covers."""
        ...

    @property
    def landmark_indices(self) -> Int[Tensor, " L"]:
        """``(478,)`` int64 vertex index per MediaPipe FaceMesh landmark."""
        ...

    @property
    def to_canonical(self) -> Float[Tensor, "4 4"]:
        """``(4, 4)`` model space -> EG3D canonical space."""
        ...

    def vertices(
        self,
        identity: Float[Tensor, "B S"],
        expression: Float[Tensor, "B E"],
        eyes: Float[Tensor, "B _eye"] | None = None,
    ) -> Float[Tensor, "B N 3"]:
        """``identity: (B, S)``, ``expression: (B, E)``, ``eyes: (B, n_eye)`` -> ``(B, N, 3)``."""
        ...


@runtime_checkable
class Rasterizer(Protocol):
    """Triangle rasteriser over clip-space vertices; pure torch by default.

    Clip space is homogeneous ``(x, y, z, w)``: pixel (row i, col j) has its centre at
    ``x/w = (2j + 1)/W - 1``, ``y/w = (2i + 1)/H - 1`` (+y points *down* the image, matching
    image rows); smaller ``z/w`` is nearer. Orthographic cameras use ``w = 1``.
    """

    def rasterize(
        self, vertices: Float[Tensor, "B N 4"], faces: Int[Tensor, "F 3"], height: int, width: int
    ) -> Fragments:
        """``vertices: (B, N, 4)`` clip space, ``faces: (F, 3)`` -> :class:`Fragments`."""
        ...

    def interpolate(
        self, attributes: Float[Tensor, "B N C"], fragments: Fragments, faces: Int[Tensor, "F 3"]
    ) -> Float[Tensor, "B H W C"]:
        """``attributes: (B, N, C)`` per vertex -> ``(B, H, W, C)``, zero where uncovered."""
        ...


@runtime_checkable
class LandmarkDetector(Protocol):
    """2D facial landmarks in MediaPipe FaceMesh order (478 points with irises)."""

    num_landmarks: int

    def detect(self, image: Any) -> Float[Tensor, "L 2"] | None:
        """``image``: ``(H, W, 3)`` uint8 RGB numpy array -> ``(L, 2)`` pixel (x, y), or None."""
        ...


@runtime_checkable
class Metric(Protocol):
    """An evaluation metric accumulated over batches (PSNR, LPIPS, FID, ...).

    ``update`` takes predictions and targets as ``(B, 3, H, W)`` in [-1, 1]; ``compute``
    returns the dataset-level value. ``available`` says whether the metric can run here (for
    example its pretrained weights were supplied) and why not.
    """

    higher_is_better: bool

    def available(self) -> tuple[bool, str]:
        """``(True, "")`` or ``(False, reason)``."""
        ...

    def reset(self) -> None:
        """Forget all accumulated values."""
        ...

    def update(self, prediction: Float[Tensor, "B 3 H W"], target: Float[Tensor, "B 3 H W"]) -> None:
        """Accumulate one batch."""
        ...

    def compute(self) -> float:
        """The metric over everything seen since ``reset``."""
        ...


@dataclass(frozen=True)
class EvaluationJob:
    """One sequence's share of a protocol: dataset indices of its source frames and driving frames."""

    sequence: str
    sources: list[int]
    """Frames inverted into the avatar (K of them)."""
    driving: list[int]
    """Frames whose camera and expression animate the avatar (and, with ground truth, its targets)."""


@runtime_checkable
class EvaluationProtocol(Protocol):
    """One evaluation protocol (paper Sec. 4): which frames are inverted, which drive, what is compared.

    The evaluation loop inverts each job's sources, renders the avatar with the driving frames and
    feeds the metrics; with ``has_ground_truth`` false, metrics that need the true frame do not apply.
    """

    name: str
    """Its registry name (the ``protocol`` column of the tables)."""
    has_ground_truth: bool
    """Whether the driving frames are the true output (same identity) or only drive it (cross identity)."""

    def source_counts(self) -> tuple[int, ...]:
        """Numbers of source frames K to run with; one table row each."""
        ...

    def skip_reason(self, sequences: Sequence[tuple[str, Sequence[int]]]) -> str | None:
        """Why the protocol cannot run on these ``(name, dataset indices)`` sequences, or None."""
        ...

    def jobs(
        self, sequences: Sequence[tuple[str, Sequence[int]]], source_count: int, report: "EvaluationReport"
    ) -> list[EvaluationJob]:
        """The jobs for K = ``source_count``; sequences left out are noted in ``report``."""
        ...

    def expression_source(
        self, model: "ModelUnderTest", registry: "Registry", report: "EvaluationReport"
    ) -> Callable[[Any, Any], Float[Tensor, "T 3 Hu Wu"]]:
        """``(source Observation, driving Observation) -> (T, 3, Hu, Wu)`` expression UV renders to animate with."""
        ...
