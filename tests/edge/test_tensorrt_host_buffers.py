"""TrtModel allocates host memory per run only for the outputs the caller reads back: run() of an engine with a large
second output (a detector's per-anchor scores) does not allocate that output on the host at every frame."""

from __future__ import annotations

import tracemalloc

from edge.backends.tensorrt_exec import TrtModel
from tests.edge.test_tensorrt_exec import FakeCudart, FakeEngine, batch_of, fake_runtime

ANCHORS = 250_000  # float32 scores per image: 1 MB each


def test_run_allocates_no_host_array_for_an_output_it_does_not_read() -> None:
    engine, cudart = FakeEngine(), FakeCudart()
    engine.shapes["scores"] = (-1, ANCHORS)
    model = TrtModel(fake_runtime(engine, cudart), b"engine", "model.plan")
    model.run(batch_of(4))  # device buffers for every output, allocated once
    tracemalloc.start()
    try:
        out = model.run(batch_of(4))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out.shape == (4, 3, 4) and out[3, 0, 0] == 3.0
    assert peak < ANCHORS * 4  # 4 unread images' scores would be 4 MB on the host
    # All outputs are still read when asked for: the device buffer of the large one holds its values.
    assert model.run_outputs(batch_of(1))["scores"].shape == (1, ANCHORS)
    model.close()
