"""Which model serves which stream (`streams[].model`, `models:`): checked when the config loads, so an agent never
starts with a stream nobody serves or a model that serves nothing."""

from __future__ import annotations

from collections.abc import Mapping


def check_served_models(primary: str, others: list[str], streams: Mapping[str, str | None]) -> None:
    """ValueError naming what is wrong: a model listed twice or as sync.model, a stream naming a model the config
    does not sync, or a model no stream uses (it would be fetched and never run)."""
    if not others:
        named = sorted({m for m in streams.values() if m is not None and m != primary})
        if named:
            raise ValueError(f"streams name model(s) {', '.join(named)} that this device does not sync; list them "
                             f"under `models:` (sync.model is {primary!r})")
        return
    if not streams:
        raise ValueError("`models:` serves further models on `streams:`; configure `streams:` naming them")
    seen: set[str] = set()
    for name in others:
        if name == primary:
            raise ValueError(f"model {name!r} is sync.model already; `models:` lists only further models")
        if name in seen:
            raise ValueError(f"model {name!r} is listed twice under `models:`")
        seen.add(name)
    for stream, model in streams.items():
        if model is not None and model != primary and model not in seen:
            raise ValueError(f"stream {stream!r} names model {model!r}, which is neither sync.model ({primary!r}) "
                             "nor under `models:`")
    by_model = streams_by_model(primary, streams)
    idle = [m for m in [primary, *others] if not by_model.get(m)]
    if idle:
        raise ValueError(f"no stream is served by model(s) {', '.join(idle)}; name them in a stream's `model:` "
                         "(a stream without one is sync.model's) or drop them from `models:`")


def streams_by_model(primary: str, streams: Mapping[str, str | None]) -> dict[str, list[str]]:
    """Model name -> its streams' names in config order; a stream without `model:` is sync.model's."""
    out: dict[str, list[str]] = {}
    for stream, model in streams.items():
        out.setdefault(model or primary, []).append(stream)
    return out
