"""An experiment swaps conv_gru -> conv_fusion -> mean by name only; a sweep over the three runs end to end."""

import json

import torch

from invertavatar_core.config.experiment import default_registry
from invertavatar_core.config.presets import preset_experiment_data
from invertavatar_core.config.sweep import Sweep
from invertavatar_core.data.synthetic import DriveBank, SyntheticSampler
from invertavatar_core.inversion.models import InversionModels
from invertavatar_core.training.stages.incremental import train_incremental


def test_sweep_over_three_aggregators_trains_and_reconstructs(full_registry, tmp_path):
    base = preset_experiment_data(
        full_registry,
        "tiny",
        training={"steps": 2, "checkpoint_every": 2, "sample_every": 100},
        data={"synthetic_drives": 2, "max_sequence_length": 3, "frames_per_sequence": 2},
    )
    sweep = Sweep(base, ["aggregator.name=conv_gru,conv_fusion,mean"], full_registry)
    parameter_names = {}

    def run_point(point, point_dir):
        training = point.config.training.model_copy(update={"out_dir": point_dir / "run"})
        experiment = point.config.model_copy(update={"training": training})
        scalars = train_incremental(experiment, full_registry, progress=False)
        models = InversionModels.load(point_dir / "run", full_registry).eval()
        parameter_names[experiment.aggregator.name] = sorted(n for n, _ in models.texture.decoder.named_parameters())
        inverter = full_registry.create(
            "inverter", experiment.inverter, registry=full_registry, experiment=experiment, models=models
        )
        batch = _sampler(models, experiment).sample(1, 3, 1, torch.Generator().manual_seed(5))
        avatar = inverter.invert(batch.sources)
        with torch.no_grad():
            view = avatar.animate(models.prior, batch.views.expression_uv, batch.views.camera).image
        return {"train_loss": scalars["loss"], "novel_view_l1": float((view - batch.views.image).abs().mean())}

    rows = sweep.run(run_point, tmp_path)
    assert [r["aggregator.name"] for r in rows] == ["conv_gru", "conv_fusion", "mean"]
    for row in rows:  # images are in [-1, 1]: a mean absolute error lies in (0, 2)
        assert 0 < row["novel_view_l1"] < 2 and 0 < row["train_loss"] < float("inf"), row
    # The aggregator is the only difference between the points, and it changes what is learned and rendered.
    assert len({r["novel_view_l1"] for r in rows}) == 3 and len({r["train_loss"] for r in rows}) == 3
    table = json.loads((tmp_path / "results.json").read_text())
    assert table == rows and (tmp_path / "results.md").is_file()  # the written table holds exactly these rows
    # The name alone changed the recurrent decoders: three different sets of parameters.
    assert len({tuple(v) for v in parameter_names.values()}) == 3
    # A rerun skips finished points.
    assert sweep.run(lambda *_: (_ for _ in ()).throw(AssertionError("reran")), tmp_path) == rows


def _sampler(models, experiment) -> SyntheticSampler:
    """Held-out synthetic identities on drives of the experiment's head model."""
    registry = default_registry()
    info = models.prior.info
    bank = DriveBank.procedural(
        registry.create("morphable_model", experiment.morphable_model),
        registry.create("rasterizer", experiment.rasterizer),
        sequences=1,
        length=4,
        expression_resolution=info.uv_resolution,
        unwrap_resolution=info.uv_resolution,
        image_resolution=info.image_resolution,
        generator=torch.Generator().manual_seed(9),
    )
    return SyntheticSampler(models.prior, bank)
