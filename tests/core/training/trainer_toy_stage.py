"""A toy stage for the trainer tests: a small MLP regressing sin on random inputs (no prior needed)."""

import os
import signal

import torch
from torch import nn

from invertavatar_core.training.trainer import StepContext


class Interrupted(RuntimeError):
    """Raised by the toy stage to simulate a crash at a chosen step."""


class ToyStage:
    """MLP with dropout (global RNG) and data from the step's generator; Adam or SGD."""

    def __init__(
        self,
        *,
        optimizer: str = "adam",
        init_seed: int = 0,
        fail_at: int | None = None,
        kill_at: int | None = None,
        batch: int = 8,
    ) -> None:
        torch.manual_seed(init_seed)
        self.model = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Dropout(0.1), nn.Linear(16, 1))
        params = self.model.parameters()
        opt = torch.optim.Adam(params, lr=1e-2) if optimizer == "adam" else torch.optim.SGD(params, lr=0.1)
        self.modules = {"model": self.model}
        self.optimizers = {"opt": opt}
        self.fail_at, self.kill_at, self.batch = fail_at, kill_at, batch
        self.exports: list[int] = []

    @staticmethod
    def data(generator: torch.Generator, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``x: (batch, 4)``, ``y: (batch, 1)``."""
        x = torch.randn(batch, 4, generator=generator)
        return x, torch.sin(x).sum(1, keepdim=True)

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (self.model(x) - y).square().mean()

    def step(self, ctx: StepContext) -> dict:
        if ctx.step == self.fail_at:
            raise Interrupted(f"simulated crash at step {ctx.step}")
        if ctx.step == self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        x, y = self.data(ctx.generator, self.batch)
        with ctx.autocast():
            loss = self.loss(x, y)
        ctx.optimize("opt", loss)
        return {"loss": loss.detach(), "lr": 0.1}

    def sample(self, ctx: StepContext) -> torch.Tensor:
        grid = torch.linspace(-2, 2, 64).reshape(1, 1, 8, 8)
        return torch.tanh(self.model(grid.reshape(-1, 1).expand(-1, 4)).reshape(1, 1, 8, 8)).expand(2, 3, 8, 8)

    def export(self, run_dir, step: int) -> None:
        self.exports.append(step)
