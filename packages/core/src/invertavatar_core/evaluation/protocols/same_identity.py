"""Same-identity reenactment (paper Table 1, same-ID): a clip's first frame driven by the frames after it."""

from collections.abc import Sequence
from typing import Literal

from invertavatar_core.evaluation.protocols.base import ProtocolBase
from invertavatar_core.evaluation.report import EvaluationReport
from invertavatar_core.plugin.kinds import EvaluationProtocolConfig
from invertavatar_core.plugin.protocols import EvaluationJob

__all__ = ["SameIdentity", "SameIdentityConfig"]


class SameIdentityConfig(EvaluationProtocolConfig):
    """Same-identity reenactment, compared with the true driving frames."""

    name: Literal["same_identity"] = "same_identity"
    driving_frames: int = 500  # Sec. 4.2.1: "the next 500 frames as the driving video"
    """Frames after the source frame used as driving frames (fewer if the clip is shorter)."""


class SameIdentity(ProtocolBase):
    """First frame as source, the next ``driving_frames`` frames of the same clip drive it."""

    def jobs(
        self, sequences: Sequence[tuple[str, Sequence[int]]], source_count: int, report: EvaluationReport
    ) -> list[EvaluationJob]:
        """One job per clip that has frames after its first."""
        drives = [(name, indices[0], list(indices[1 : 1 + self.config.driving_frames])) for name, indices in sequences]
        return [EvaluationJob(name, [source], driving) for name, source, driving in drives if driving]
