"""Few-shot inversion (paper Table 2, Fig. 6): K source frames, evaluated on a clip's last frames.

Rows over K are the metric-vs-number-of-frames curves, one per model (aggregator).
"""

from collections.abc import Sequence
from typing import Literal

from pydantic import Field

from invertavatar_core.evaluation.protocols.base import ProtocolBase
from invertavatar_core.evaluation.report import EvaluationReport
from invertavatar_core.plugin.kinds import EvaluationProtocolConfig
from invertavatar_core.plugin.protocols import EvaluationJob

__all__ = ["FewShot", "FewShotConfig", "few_shot_indices"]


class FewShotConfig(EvaluationProtocolConfig):
    """Few-shot inversion from K evenly sampled source frames."""

    name: Literal["few_shot"] = "few_shot"
    source_frames: tuple[int, ...] = Field(default=(1, 2, 4, 8), min_length=1)
    """Numbers of source frames K, one table row each."""
    source_window: int = 200  # Sec. 4.2.2: "sample input frames evenly from the initial 200 frames"
    """Source frames are sampled evenly from this many leading frames."""
    eval_frames: int = 100  # Sec. 4.2.2: "use the last 100 frames for performance evaluation"
    """Trailing frames the avatar is evaluated on (clips shorter than window + this are skipped)."""
    sources: Literal["window", "evaluated"] = "window"
    """Where the K sources come from: the leading window (the paper's protocol), or ``evaluated``:
    K of the evaluated frames themselves, spread evenly over them. The second is no benchmark but a
    ceiling: how far a model gets when it has seen the very frames it is scored on, hence how much
    more frames *could* add (docs/reproduction.md)."""


def few_shot_indices(
    length: int, count: int, window: int, eval_frames: int, *, from_evaluated: bool = False
) -> tuple[list[int], list[int]] | None:
    """``(source positions, evaluation positions)`` within a clip of ``length`` frames, or None if too short.

    Sources: ``count`` positions spread evenly over ``[0, window)`` (duplicates removed, so a
    window shorter than ``count`` gives fewer), or over the evaluated positions when
    ``from_evaluated``; evaluation: the last ``eval_frames`` positions.
    """
    if length < window + eval_frames or count < 1:
        return None
    evaluated = list(range(length - eval_frames, length))
    pool = evaluated if from_evaluated else list(range(window))
    sources = sorted({pool[round(i * (len(pool) - 1) / max(count - 1, 1))] for i in range(count)})
    return sources, evaluated


class FewShot(ProtocolBase):
    """For each K: K frames evenly from the first ``source_window`` frames; the last ``eval_frames`` drive."""

    def source_counts(self) -> tuple[int, ...]:
        """The configured K values."""
        return tuple(self.config.source_frames)

    def jobs(
        self, sequences: Sequence[tuple[str, Sequence[int]]], source_count: int, report: EvaluationReport
    ) -> list[EvaluationJob]:
        """One job per clip long enough for the window and the evaluation frames; the report names the others."""
        window, eval_frames = self.config.source_window, self.config.eval_frames
        jobs = []
        for name, indices in sequences:
            chosen = few_shot_indices(
                len(indices), source_count, window, eval_frames, from_evaluated=self.config.sources == "evaluated"
            )
            if chosen is None:
                report.note(
                    f"few_shot: sequence {name!r} ({len(indices)} frames) is shorter than source_window "
                    f"({window}) + eval_frames ({eval_frames}); skipped"
                )
                continue
            jobs.append(EvaluationJob(name, [indices[i] for i in chosen[0]], [indices[i] for i in chosen[1]]))
        return jobs
