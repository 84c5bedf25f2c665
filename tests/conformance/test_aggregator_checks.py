"""The aggregator conformance checks catch what they claim to: each fails on a deliberately broken fake.

Every fake below passes the kit's older checks (shapes, streaming == sequence, batch
independence) and fails exactly the new one aimed at its defect.
"""

import pytest
import torch

from invertavatar_core.plugin.bases import AggregatorBase
from invertavatar_core.testing import AggregatorConformance

CHANNELS = AggregatorConformance.channels


class _Mean(AggregatorBase):
    """A correct running mean: the baseline the fakes break in one way each."""

    def init_state(self, like):
        return {"sum": torch.zeros_like(like), "count": like.new_zeros(like.shape[0])}

    def update(self, state, frame):
        return {"sum": state["sum"] + frame, "count": state["count"] + 1}

    def read(self, state):
        return state["sum"] / state["count"].view(-1, 1, 1, 1)


class _AliasedState(_Mean):
    """Keeps the sum under a second name: the same storage twice, which safetensors refuses."""

    def init_state(self, like):
        state = super().init_state(like)
        return {**state, "previous_sum": state["sum"]}

    def update(self, state, frame):
        new = super().update(state, frame)
        return {**new, "previous_sum": new["sum"]}


class _TransposedState(_Mean):
    """Stores the sum as a transposed view (not contiguous), which safetensors refuses."""

    def init_state(self, like):
        state = super().init_state(like)
        return {**state, "sum": state["sum"].transpose(-1, -2).contiguous().transpose(-1, -2)}

    def update(self, state, frame):
        new = super().update(state, frame)
        return {**new, "sum": new["sum"].transpose(-1, -2).contiguous().transpose(-1, -2)}


class _LateNaN(_Mean):
    """Turns NaN from the 13th frame on (a counter that overflows a buffer, say): short clips look fine."""

    def update(self, state, frame):
        new = super().update(state, frame)
        late = (new["count"] > 12).view(-1, 1, 1, 1)
        return {**new, "sum": torch.where(late, torch.full_like(frame, float("nan")), new["sum"])}


class _InPlace(_Mean):
    """Adds into the state it was given and returns it: the caller's old state changes too."""

    def update(self, state, frame):
        state["sum"].add_(frame)
        state["count"].add_(1)
        return state


class _Kit(AggregatorConformance):
    """The kit's checks, called on a component built here instead of from the registry."""

    name = "fake"


OLDER_CHECKS = ("test_sequence_shape_and_finite", "test_streaming_equals_sequence", "test_batch_independence")


@pytest.mark.parametrize("fake", [_AliasedState, _TransposedState, _LateNaN, _InPlace])
def test_each_fake_passes_the_older_checks(fake):
    kit, component = _Kit(), fake(CHANNELS).eval()
    for check in OLDER_CHECKS:
        getattr(kit, check)(component)


def test_the_new_checks_pass_on_a_correct_aggregator():
    kit, component = _Kit(), _Mean(CHANNELS).eval()
    kit.test_state_saves_with_safetensors(component)
    kit.test_long_stream_stays_finite(component)
    kit.test_update_does_not_mutate_its_inputs(component)


def test_shared_storage_in_the_state_fails():
    with pytest.raises(AssertionError, match="'previous_sum' and 'sum'|'sum' and 'previous_sum'") as info:
        _Kit().test_state_saves_with_safetensors(_AliasedState(CHANNELS).eval())
    assert "share storage" in str(info.value) and "safetensors" in str(info.value)


def test_a_state_safetensors_refuses_fails():
    with pytest.raises(AssertionError, match="cannot be saved with safetensors"):
        _Kit().test_state_saves_with_safetensors(_TransposedState(CHANNELS).eval())


def test_nan_after_many_frames_fails():
    with pytest.raises(AssertionError, match="state 'sum' after 13 frames has NaN"):
        _Kit().test_long_stream_stays_finite(_LateNaN(CHANNELS).eval())


def test_update_that_mutates_its_input_state_fails():
    with pytest.raises(AssertionError, match=r"changed its input state in place: \['sum', 'count'\]"):
        _Kit().test_update_does_not_mutate_its_inputs(_InPlace(CHANNELS).eval())
