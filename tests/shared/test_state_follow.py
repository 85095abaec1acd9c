"""The state payload says what moves a device (its pointer or only its fleet) and which channel it follows; payloads
of agents older than these fields stay valid, and a device cannot put anything else there."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.payloads import StatePayload

OLD = {"device_id": "cam-1", "boot_id": "b1", "seq": 0, "ts": 1, "agent_version": "0.1.0",
       "model": {"name": "tiny", "version": 1}, "hardware": {}, "config_digest": "d1", "desired_version": 3}


def test_old_state_payloads_stay_valid_and_new_ones_say_the_mode_and_channel() -> None:
    old = StatePayload.model_validate(OLD)
    assert old.follow is None and old.channel is None
    new = StatePayload.model_validate({**OLD, "follow": "desired", "channel": "canary"})
    assert (new.follow, new.channel) == ("desired", "canary")


@pytest.mark.parametrize("bad", [{"follow": "sideways"}, {"channel": "../stable"}, {"channel": "x" * 65}])
def test_a_state_payload_with_an_unknown_mode_or_an_unsafe_channel_is_refused(bad: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        StatePayload.model_validate({**OLD, **bad})
