"""Evaluation protocols of paper Sec. 4 (Tables 1-3, Fig. 6), components chosen by registry name.

Every protocol inverts source frames with a model's inverter, animates the avatar with driving
frames (their camera and expression UV render) through ``prior.render`` only, and accumulates
the configured metrics. Core registers (kind ``evaluation_protocol``), with the paper's counts as
the config defaults:

- ``reconstruction`` (Table 3): each sequence's first frame is inverted and re-rendered with
  its own camera and expression; compared with itself.
- ``same_identity`` (Table 1, same-ID): first frame as source, the next ``driving_frames``
  (500) frames of the same clip drive it; compared with those frames.
- ``cross_identity`` (Table 1, cross-ID): the first frame of clip ``i`` is driven by the first
  ``driving_frames`` (200) frames of clip ``i + 1`` (cyclically); no ground truth.
- ``few_shot`` (Table 2, Fig. 6): for each K in ``source_frames``, K source frames sampled
  evenly from the first ``source_window`` (200) frames, evaluated on the last ``eval_frames``
  (100) frames; clips shorter than the two together are skipped.

Where a protocol has ground truth, every metric compares the output with the true frame. A
metric's ``reference`` attribute (default ``"ground_truth"``) says what its target is without; its
optional ``details()`` mapping (AKD: matched / missed / faceless pairs) adds columns.
Reconstruction time per avatar (inversion only, the paper's Time(s)) is reported as
``reconstruct_s``. Metrics that cannot run here (missing weights, detector) are listed with the
reason in every report.
"""

from invertavatar_core.evaluation.protocols.base import ExpressionSource, ModelUnderTest, ProtocolBase, run_protocol
from invertavatar_core.evaluation.protocols.cross_identity import CrossIdentity, CrossIdentityConfig, ExpressionTransfer
from invertavatar_core.evaluation.protocols.few_shot import FewShot, FewShotConfig, few_shot_indices
from invertavatar_core.evaluation.protocols.reconstruction import Reconstruction, ReconstructionConfig
from invertavatar_core.evaluation.protocols.same_identity import SameIdentity, SameIdentityConfig

__all__ = [
    "CrossIdentity",
    "CrossIdentityConfig",
    "ExpressionSource",
    "ExpressionTransfer",
    "FewShot",
    "FewShotConfig",
    "ModelUnderTest",
    "ProtocolBase",
    "Reconstruction",
    "ReconstructionConfig",
    "SameIdentity",
    "SameIdentityConfig",
    "few_shot_indices",
    "run_protocol",
]
