"""A further model a simulated multi-stream agent serves beside its main one (an agent's `models:`), on the streams
that name it: its own version, anti-rollback floor and state-payload entry."""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.errors import InvalidNameError
from shared.names import check_ident
from shared.payloads import ModelInfo


def second_model_streams(name: str, main: str, streams: list[str]) -> list[str]:
    """The streams a second model serves: the last half (the main model keeps the rest); ValueError in one line
    when it cannot be served."""
    if len(streams) < 2:
        raise ValueError("--second-model needs --streams 2 or more: it serves the last half of a device's streams")
    try:
        check_ident(name, "second model")
    except InvalidNameError as exc:
        raise ValueError(str(exc)) from exc
    if name == main:
        raise ValueError(f"--second-model must differ from --model ({main!r}): it is a further model")
    return streams[len(streams) // 2:]


@dataclass
class SideModel:
    """One further model: name, served version, the highest activated (anti-rollback), its streams and the version
    being installed (as SimDevice.installing for the main model)."""

    name: str
    version: int
    streams: list[str] = field(default_factory=list)
    highest: int = 0
    installing: int | None = None

    def __post_init__(self) -> None:
        self.highest = max(self.highest, self.version)

    def serve(self, version: int) -> None:
        """Its install finished: serve `version`."""
        self.version = version
        self.highest = max(self.highest, version)
        self.installing = None

    def info(self) -> ModelInfo:
        """Its entry under the state payload's `models`."""
        return ModelInfo(name=self.name, version=self.version, variant=f"{self.name}.fp32.onnx", precision="fp32",
                         backend="onnxruntime", device="cpu", streams=list(self.streams))
