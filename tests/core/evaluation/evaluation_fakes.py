"""Evaluation test helpers: sequences rendered by the fake prior, an oracle inverter that knows their w+."""

import math
from typing import Literal

import torch

from invertavatar_core import RasterizerConfig, hookimpl
from invertavatar_core.config.experiment import ExperimentConfig
from invertavatar_core.evaluation.protocols import ModelUnderTest
from invertavatar_core.inversion.avatar import Avatar
from invertavatar_core.inversion.observation import Observation
from invertavatar_core.testing.fake_prior import FakePrior
from invertavatar_core.testing.inputs import example_camera, example_expression_uv


class StubRasterizerConfig(RasterizerConfig):
    """A rasterizer name for experiment configs in these tests (never rasterizes)."""

    name: Literal["testing_stub_rasterizer"] = "testing_stub_rasterizer"


class StubRasterizerPlugin:
    @hookimpl
    def invertavatar_register_rasterizers(self, registrar):
        registrar.add("testing_stub_rasterizer", lambda config: object(), StubRasterizerConfig, description="stub")


def yawed_camera(yaw: float):
    """A camera on the orbit (radius 2.7) at ``yaw`` radians, looking at the origin."""
    camera = example_camera(1)
    c, s = math.cos(yaw), math.sin(yaw)
    rotation = torch.tensor([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
    pose = camera[0, :16].reshape(4, 4).clone()
    pose[:3, :3] = rotation @ pose[:3, :3]
    pose[:3, 3] = rotation @ pose[:3, 3]
    camera[0, :16] = pose.flatten()
    return camera


class RenderedSequences:
    """``sequences`` clips of ``length`` frames rendered by the fake prior from known w+ (in ``identity``)."""

    def __init__(self, prior: FakePrior, sequences: int = 3, length: int = 8, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        info = prior.info
        self.frames: list[Observation] = []
        self._sequences = {}
        with torch.no_grad():
            for s in range(sequences):
                ws = prior.w_avg + 0.8 * torch.randn(1, info.num_ws, info.w_dim, generator=g)
                features = prior.canonical(ws)
                start = len(self.frames)
                for t in range(length):
                    camera = yawed_camera(0.3 * math.sin(t + s))
                    uv = example_expression_uv(1, info.uv_resolution) * (0.9 + 0.02 * t)
                    uv[:, 2] = (uv[:, 2] > 0).float()
                    image = prior.render(features, uv, camera).image
                    self.frames.append(
                        Observation(
                            image=image,
                            camera=camera,
                            expression_uv=uv,
                            unwrap_grid=torch.zeros(1, 8, 8, 2),
                            visibility=torch.ones(1, 1, 8, 8),
                            identity=ws.flatten(1),  # not morphable-model coefficients: the oracle's key
                        )
                    )
                self._sequences[f"clip{s}"] = list(range(start, start + length))

    def sequences(self):
        return self._sequences

    def __len__(self):
        return len(self.frames)

    def __getitem__(self, index: int) -> Observation:
        return self.frames[index]


class OracleInverter:
    """Returns the avatar whose w+ the dataset stored in ``identity``: reconstructions are exact."""

    def __init__(self, prior: FakePrior, *, exact: bool = True) -> None:
        self.prior = prior
        self.exact = exact
        self.calls: list[int] = []

    def invert(self, frames: Observation) -> Avatar:
        self.calls.append(len(frames))
        info = self.prior.info
        ws = frames.identity[:1].reshape(1, info.num_ws, info.w_dim)
        if not self.exact:  # a worse model: halfway to the average face
            ws = (ws + self.prior.w_avg) / 2
        return Avatar(self.prior.canonical(ws), {"name": "testing_fake_prior"}, frame_count=len(frames))


SMALL_PROTOCOLS = {
    "reconstruction": {},
    "same_identity": {"driving_frames": 4},
    "cross_identity": {"driving_frames": 3},
    "few_shot": {"source_window": 4, "eval_frames": 3, "source_frames": [1, 2, 4]},
}
"""Protocol settings scaled to the 8-frame clips of the ``rendered`` fixture."""


def eval_experiment(registry, protocols=tuple(SMALL_PROTOCOLS), **evaluation) -> ExperimentConfig:
    """An experiment whose components resolve in ``eval_registry`` and whose evaluation is small."""
    data = {
        "name": "evaltest",
        "prior": {"name": "testing_fake_prior"},
        "rasterizer": {"name": "testing_stub_rasterizer"},
        "encoders": {
            "latent": registry.tiny_config("encoder", "e4e").model_dump(mode="json"),
            "texture": None,
            "static": None,
        },
        "evaluation": {
            "metrics": ["psnr", "l1", "ssim", "lpips", "csim"],
            "protocols": [{"name": p, **SMALL_PROTOCOLS[p]} for p in protocols],
            "batch_size": 2,
            "qualitative_examples": 2,
            **evaluation,
        },
    }
    return ExperimentConfig.model_validate(data, context={"registry": registry})


def oracle_model(prior, experiment, label="oracle", exact=True) -> ModelUnderTest:
    return ModelUnderTest(label, experiment, OracleInverter(prior, exact=exact), prior, trained=True)
