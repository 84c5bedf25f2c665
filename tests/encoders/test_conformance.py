"""The core conformance kit run on our encoders against a tiny PriorFeatureInfo (no prior needed)."""

from typing import Any

import pytest

from invertavatar_core.plugin.protocols import PriorFeatureInfo
from invertavatar_core.plugin.registry import Registry
from invertavatar_core.testing import EncoderConformance


class _WithTinyInfo(EncoderConformance):
    """Builds against the tests' tiny prior info, with this folder's registry (test aggregator included)."""

    @pytest.fixture(scope="class")
    @classmethod
    def registry(cls, registry: Registry) -> Registry:  # the session registry of conftest.py
        return registry

    @pytest.fixture(scope="class")
    @classmethod
    def prior_info(cls, tiny_info: PriorFeatureInfo) -> PriorFeatureInfo:
        return tiny_info

    @pytest.fixture(autouse=True)
    def _use_tiny_info(self, tiny_info: PriorFeatureInfo) -> None:
        self.tiny_info = tiny_info

    def build_context(self, registry: Registry) -> dict[str, Any]:
        aggregator = registry.tiny_config("aggregator", self.aggregator_name) if self.aggregator_name else None
        return {"prior_info": self.tiny_info, "aggregator": aggregator, "registry": registry}


class TestE4E(_WithTinyInfo):
    name = "e4e"


class TestTextureUNetRecurrent(_WithTinyInfo):
    name = "texture_unet"
    aggregator_name = "test_decay"


class TestTextureUNetOneShot(_WithTinyInfo):
    name = "texture_unet"
    aggregator_name = None


class TestTriplaneSFTUNet(_WithTinyInfo):
    name = "triplane_sft_unet"
    aggregator_name = "test_decay"


class TestTriplaneOffsetUNet(_WithTinyInfo):
    name = "triplane_offset_unet"
    aggregator_name = None
