"""A rollout's canary mark in the signed desired state: verified like every field, absent from the signed text of
every state that is not a canary (older agents still verify those), never on a channel state or a rollback."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from shared.desired_state import encode_desired, sign_desired, verify_desired
from tests.shared.test_desired_state import KEY, TRUSTED, state


def test_a_canary_state_round_trips_signed() -> None:
    s = state(rollout_id="r-7", canary=True)
    got = verify_desired(sign_desired(s, KEY), TRUSTED, "lab", "cam-3")
    assert got.canary and got == s


def test_a_state_that_is_no_canary_signs_the_text_it_did_before() -> None:
    text = encode_desired(state(rollout_id="r-7"))
    assert "canary" not in json.loads(text)
    assert json.loads(encode_desired(state(rollout_id="r-7", canary=True)))["canary"] is True


@pytest.mark.parametrize("over", [{"version": None, "channel": "beta"}, {"allow_downgrade": True}])
def test_a_canary_names_the_version_it_tries_and_is_never_a_rollback(over: dict[str, object]) -> None:
    with pytest.raises(ValidationError, match="canary desired state names the version"):
        state(canary=True, **over)
