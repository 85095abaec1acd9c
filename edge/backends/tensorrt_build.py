"""Building a TensorRT engine from ONNX bytes (TensorRT 10 API): the one builder of the agent and the cloud's gate.

`trt` is the imported tensorrt module (tensorrt_runtime.probe_tensorrt), so importing this module needs no TensorRT.
"""

from __future__ import annotations

import logging
from typing import Any

from edge.errors import BackendError

log = logging.getLogger(__name__)

Profile = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]


def profile_shapes(shape: tuple[int, ...], max_batch: int, opt_batch: int = 1) -> Profile:
    """(min, opt, max) for an input: a dynamic batch spans 1..max_batch, tuned for opt_batch; fixed dims stay."""
    if not shape:
        raise BackendError("the ONNX input has no dimensions; TensorRT needs [batch, C, H, W]")
    if any(d < 0 for d in shape[1:]):
        raise BackendError(f"input shape {list(shape)} is dynamic beyond the batch axis; export it with fixed C, H, W")
    if shape[0] >= 0:
        return shape, shape, shape
    if not 1 <= opt_batch <= max_batch:
        raise BackendError(f"TensorRT opt batch {opt_batch} must lie in 1..max batch {max_batch}")
    rest = shape[1:]
    return (1, *rest), (opt_batch, *rest), (max_batch, *rest)


def make_logger(trt: Any) -> Any:
    """A TensorRT logger that forwards warnings and errors to Python logging (and so to journald/JSON logs)."""
    severity = trt.ILogger.Severity
    levels = {
        severity.INTERNAL_ERROR: logging.ERROR,
        severity.ERROR: logging.ERROR,
        severity.WARNING: logging.WARNING,
        severity.INFO: logging.DEBUG,
        severity.VERBOSE: logging.DEBUG,
    }

    class _Logger(trt.ILogger):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)

        def log(self, sev: Any, msg: str) -> None:
            log.log(levels.get(sev, logging.WARNING), "TensorRT: %s", msg)

    return _Logger()


def build_engine(
    trt: Any,
    onnx: bytes,
    *,
    workspace_bytes: int,
    fp16: bool,
    max_batch: int,
    opt_batch: int = 1,
    timing_cache: bytes = b"",
) -> tuple[bytes, bytes]:
    """(serialized engine, updated timing cache); BackendError when the ONNX cannot be parsed or built."""
    logger = make_logger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10 networks are always explicit-batch
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendError(f"TensorRT cannot parse the ONNX model: {errors or 'no detail given'}")
    if network.num_inputs < 1:
        raise BackendError("the ONNX model has no inputs")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    cache = config.create_timing_cache(timing_cache)
    if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
        log.warning("the TensorRT timing cache does not match this GPU or version; starting an empty one")
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        profile.set_shape(tensor.name, *profile_shapes(tuple(tensor.shape), max_batch, opt_batch))
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendError("TensorRT could not build an engine for this model (its log lines above say why)")
    return bytes(serialized), bytes(config.get_timing_cache().serialize())
