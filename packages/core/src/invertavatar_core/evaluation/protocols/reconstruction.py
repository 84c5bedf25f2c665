"""Reconstruction (paper Table 3): each sequence's first frame, inverted and re-rendered as itself."""

from collections.abc import Sequence
from typing import Literal

from invertavatar_core.evaluation.protocols.base import ProtocolBase
from invertavatar_core.evaluation.report import EvaluationReport
from invertavatar_core.plugin.kinds import EvaluationProtocolConfig
from invertavatar_core.plugin.protocols import EvaluationJob

__all__ = ["Reconstruction", "ReconstructionConfig"]


class ReconstructionConfig(EvaluationProtocolConfig):
    """Reconstruction of the source frame with its own camera and expression (Table 3)."""

    name: Literal["reconstruction"] = "reconstruction"


class Reconstruction(ProtocolBase):
    """The first frame of each sequence is both the source and the one driving frame."""

    def jobs(
        self, sequences: Sequence[tuple[str, Sequence[int]]], source_count: int, report: EvaluationReport
    ) -> list[EvaluationJob]:
        """One job per sequence: its first frame against itself."""
        return [EvaluationJob(name, [indices[0]], [indices[0]]) for name, indices in sequences]
