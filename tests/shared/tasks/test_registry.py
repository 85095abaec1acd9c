"""A head is picked by (task, format) from a registry; what it does not know is refused in one line."""

from __future__ import annotations

import typing

import pytest

from shared.errors import TaskContractError
from shared.task_contract import TASKS, HeadSpec, TaskName
from shared.tasks import head_factory, make_head, registered_heads
from shared.tasks.base import HeadContext

CTX = HeadContext(labels=("a",), output_names=("out",), input_hw=(4, 4))


def test_every_format_the_manifest_accepts_has_a_head() -> None:
    specs = typing.get_args(typing.get_args(HeadSpec)[0])
    formats = {f for spec in specs for f in typing.get_args(spec.model_fields["format"].annotation)}
    assert formats == {f for _, f in registered_heads()}
    assert set(typing.get_args(TaskName)) == set(TASKS) == {t for t, _ in registered_heads()}


@pytest.mark.parametrize(
    ("task", "fmt"), [("anomaly", "score"), ("detection", "centernet"), ("classification", "yolo")]
)
def test_unknown_task_or_format_is_one_clear_line(task: str, fmt: str) -> None:
    wanted = f"no task head for task '{task}' with output format '{fmt}'"
    with pytest.raises(TaskContractError, match=wanted) as info:
        head_factory(task, fmt)
    assert "detection/yolo" in str(info.value) and "\n" not in str(info.value)


def test_something_that_is_not_a_contract_is_refused() -> None:
    with pytest.raises(TaskContractError, match="not an output contract"):
        make_head(object(), CTX)
