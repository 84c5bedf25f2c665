"""The configured metrics of an evaluation, built once, each fed the target its ``reference`` asks for.

Metrics with ``uses_head_mask`` (:mod:`invertavatar_core.evaluation.metrics.head_mask`) also get
the target frames' head masks; on data without masks they are not measured (NaN, and
:attr:`MetricSet.unmasked` names them for the report).
"""

import logging
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from invertavatar_core.plugin.registry import Registry

__all__ = [
    "MetricSet",
]

log = logging.getLogger("invertavatar.evaluation")


class MetricSet:
    """The configured metrics, built once; the unavailable ones recorded with their reason."""

    def __init__(self, configs: Sequence[Any], registry: Registry, device: torch.device) -> None:
        self.metrics: dict[str, Any] = {}
        self.skipped: dict[str, str] = {}
        self.unmasked: set[str] = set()
        """Head-masked metrics that met a batch without head masks since the last :meth:`reset`."""
        for config in configs:
            metric = registry.create("metric", config)
            ok, reason = metric.available()
            if not ok:
                self.skipped[config.name] = reason
                continue
            if isinstance(metric, torch.nn.Module):
                metric.to(device)
            self.metrics[config.name] = metric

    def reset(self) -> None:
        """Reset every metric."""
        self.unmasked = set()
        for metric in self.metrics.values():
            metric.reset()

    def applicable(self, has_ground_truth: bool) -> dict[str, Any]:
        """Metrics that apply to a protocol with / without ground truth."""
        return {
            n: m
            for n, m in self.metrics.items()
            if has_ground_truth or getattr(m, "reference", "ground_truth") != "ground_truth"
        }

    def update(
        self,
        output: Tensor,
        ground_truth: Tensor | None,
        source: Tensor,
        driving: Tensor,
        head_mask: Tensor | None = None,
    ) -> None:
        """Feed one batch: each metric gets the target its ``reference`` asks for.

        Args:
            output: ``(B, 3, H, W)`` the renders in [-1, 1].
            ground_truth: ``(B, 3, H, W)`` the true frames, or None (no ground truth).
            source: ``(1, 3, H, W)`` the first source frame.
            driving: ``(B, 3, H, W)`` the driving frames.
            head_mask: ``(B, 1, H, W)`` in [0, 1], where the ground truth's head is (None: unknown).
        """
        for name, metric in self.applicable(ground_truth is not None).items():
            reference = getattr(metric, "reference", "ground_truth")
            if ground_truth is not None:
                target = ground_truth
            elif reference == "source_identity":
                target = source.expand_as(output)
            else:
                target = driving
            if getattr(metric, "uses_head_mask", False):
                if head_mask is None or ground_truth is None:
                    self.unmasked.add(name)
                    continue
                metric.update(output, target, head_mask)
            else:
                metric.update(output, target)

    def results(self, has_ground_truth: bool) -> dict[str, float]:
        """``{name: value}``, plus ``{name}_{key}`` for each entry of a metric's optional ``details()``."""
        out: dict[str, float] = {}
        for name, metric in self.applicable(has_ground_truth).items():
            if name in self.unmasked and not getattr(metric, "count", 1):
                out[name] = math.nan  # reported once by the caller, not as a warning per row
                continue
            try:
                out[name] = float(metric.compute())
            except (RuntimeError, ValueError) as exc:  # e.g. FID over fewer than two frames
                out[name] = math.nan
                log.warning("%s: %s", name, exc)
            details = getattr(metric, "details", None)  # optional: counts a reader needs beside the value
            if callable(details):
                out.update({f"{name}_{key}": value for key, value in details().items()})
        return out
