"""Learning test (issue 6): aggregating partial, noisy observations of a hidden feature map.

Each frame sees a random 35 % of the pixels of a smooth hidden map, with a per-frame noise level
given as an input channel. A small encoder, the aggregator under test and a linear head are
trained on sequences of 1-16 frames, then the error is measured at 1, 2, 4, 8 and 16 frames.
Figures seen on 3 seeds (MSE at 1 / 8 frames): conv_gru 0.19-0.21 / 0.038-0.040,
conv_fusion 0.21 / 0.042, mean 0.28-0.29 / 0.054-0.059.
"""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

HIDDEN_CHANNELS, FEATURES, SIZE, VISIBLE = 2, 16, 8, 0.35
FRAME_COUNTS = (1, 2, 4, 8, 16)


def _sequences(batch: int, frames: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``x: (B, T, 4, S, S)`` = masked noisy map (2), mask (1), noise level (1); ``y: (B, 2, S, S)``."""
    y = F.interpolate(
        torch.randn(batch, HIDDEN_CHANNELS, 3, 3, generator=generator), size=(SIZE, SIZE), mode="bilinear"
    )
    mask = (torch.rand(batch, frames, 1, SIZE, SIZE, generator=generator) < VISIBLE).float()
    noise = 0.05 + 0.75 * torch.rand(batch, frames, 1, 1, 1, generator=generator)
    seen = mask * (y[:, None] + noise * torch.randn(batch, frames, HIDDEN_CHANNELS, SIZE, SIZE, generator=generator))
    return torch.cat([seen, mask, noise.expand(-1, -1, 1, SIZE, SIZE)], 2), y


class _Model(nn.Module):
    def __init__(self, aggregator: nn.Module) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(HIDDEN_CHANNELS + 2, FEATURES, 3, padding=1), nn.LeakyReLU(0.2), nn.Conv2d(FEATURES, FEATURES, 1)
        )
        self.aggregator = aggregator
        self.head = nn.Conv2d(FEATURES, HIDDEN_CHANNELS, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t = x.shape[:2]
        features = self.encoder(x.flatten(0, 1)).unflatten(0, (b, t))
        return self.head(self.aggregator(features))


def _train_and_measure(registry, name: str) -> dict[int, float]:
    torch.manual_seed(0)
    model = _Model(registry.create("aggregator", name, channels=FEATURES))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(1)
    for _ in range(300):
        x, y = _sequences(16, int(torch.randint(1, 17, (1,), generator=g)), g)
        loss = F.mse_loss(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    x, y = _sequences(256, max(FRAME_COUNTS), torch.Generator().manual_seed(99))
    with torch.no_grad():
        return {t: F.mse_loss(model(x[:, :t]), y).item() for t in FRAME_COUNTS}


@pytest.mark.slow
def test_conv_gru_improves_with_frames_and_beats_mean(full_registry):
    # conv_fusion is left out: nothing here asserts on it (its figures are in the module doc), and a third
    # training run was a third of this test's time.
    errors = {name: _train_and_measure(full_registry, name) for name in ("conv_gru", "mean")}
    report = "\n".join(
        f"{name:12s} " + "  ".join(f"T={t}: {e:.4f}" for t, e in errs.items()) for name, errs in errors.items()
    )
    print("\nheld-out MSE by number of frames\n" + report)
    gru = errors["conv_gru"]
    # Error falls at every doubling from 1 to 8 frames, and by more than half overall.
    assert gru[1] > gru[2] > gru[4] > gru[8], report
    assert gru[8] < 0.5 * gru[1], report
    # At 8 frames the learned gates beat plain averaging by a clear margin (seen: ~30 %).
    assert gru[8] < 0.85 * errors["mean"][8], report
