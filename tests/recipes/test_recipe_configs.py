"""Every config under recipes/ validates against today's schema (a renamed field must not rot them unseen)."""

import pytest
from recipe_scripts import RECIPES

from invertavatar_core.config.experiment import load_config_data, load_experiment
from invertavatar_prior_next3d.training import PriorTrainingConfig

CONFIGS = sorted(RECIPES.glob("configs/*.yaml")) + sorted(RECIPES.glob("evaluation/*.yaml"))


def test_the_recipes_have_configs():
    names = {p.name for p in CONFIGS}
    assert {"prior-supervised.yaml", "stage3-incremental.yaml", "stage3-longer.yaml", "ceiling.yaml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_recipe_config_validates(path, full_registry):
    if path.parent.name == "configs" and path.name.startswith("prior-"):  # evaluation configs are experiments
        config = PriorTrainingConfig.model_validate(load_config_data(path), context={"registry": full_registry})
        assert config.prior.name == "next3d"
    else:
        experiment = load_experiment(path, full_registry)
        assert experiment.name and experiment.data.root
