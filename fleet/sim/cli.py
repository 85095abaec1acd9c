"""`edgeferry sim`: run N simulated agents against a broker until interrupted (or for --duration seconds)."""

from __future__ import annotations

import asyncio
import contextlib
import resource
import signal
from pathlib import Path
from typing import Annotated

import typer

from fleet.errors import SimulatorError
from fleet.sim.behaviour import BEHAVIOURS


def _broker(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise SimulatorError(f"--broker must be host:port, got {text!r}")
    return host, int(port)


def _raise_fd_limit(devices: int) -> None:
    """One socket per device: lift the soft fd limit to the hard one where the fleet needs it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < devices + 256:
        if hard != resource.RLIM_INFINITY and hard < devices + 256:
            raise SimulatorError(f"{devices} devices need {devices + 256} open files; the hard limit is {hard} "
                                 "(raise it with ulimit -Hn or LimitNOFILE=)")
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, devices + 1024)), hard))


def sim(
    devices: Annotated[int, typer.Option(min=1, max=100_000, help="Simulated devices.")] = 10,
    broker: Annotated[str, typer.Option(help="MQTT broker as host:port.")] = "127.0.0.1:1883",
    fleet: Annotated[str, typer.Option(help="Fleet (topic level 2).")] = "sim",
    group: Annotated[list[str] | None, typer.Option(help="Group of every device (repeat for more).")] = None,
    rate: Annotated[float, typer.Option(help="Telemetry messages per second per device.")] = 1.0,
    behaviour: Annotated[str, typer.Option(
        help=f"Shares per behaviour, e.g. good=0.8,slow=0.1,offline=0.1 (rest is good); {', '.join(BEHAVIOURS)}.",
    )] = "good=1",
    command_key: Annotated[list[Path] | None, typer.Option(
        help="ed25519 public key (PEM) whose signed commands and desired state devices accept (repeatable).",
    )] = None,
    model: Annotated[str, typer.Option(help="Model name the devices serve.")] = "digits",
    version: Annotated[int, typer.Option("--model-version", min=1, help="Version every device starts on.")] = 1,
    prefix: Annotated[str, typer.Option(help="Device id prefix: PREFIX-0000, PREFIX-0001, ...")] = "sim",
    duration: Annotated[float | None, typer.Option(min=0.1, help="Stop after this many seconds.")] = None,
    sensor: Annotated[str | None, typer.Option(
        help="Devices also play sensor devices (anomaly figures and alerts), shares per sensor behaviour, e.g. "
        "normal=0.8,faulty=0.2 (rest is normal); normal, faulty, drifting, broken_threshold.",
    )] = None,
    detectors: Annotated[int, typer.Option(
        min=0, help="The first N devices also play detectors: people and cars crossing two zones, as object "
        "events, snapshots and zone counts.")] = 0,
    streams: Annotated[int, typer.Option(
        min=0, max=32, help="Every device plays an agent serving N camera streams: per-stream figures (capture and "
        "processed fps, skips, queue age, e2e) under telemetry's `streams`, cam0..camN-1. 0: one stream.")] = 0,
    stalled_stream: Annotated[bool, typer.Option(
        help="With --streams: the last stream of every device stalls (no frames, disconnected, errors).")] = False,
    second_model: Annotated[str | None, typer.Option(
        help="With --streams 2 or more: every device also serves this model (from v1) on the last half of its "
        "streams, listed under its state's `models`; a deploy naming it moves it alone.")] = None,
) -> None:
    """Run N simulated agents as real MQTT clients in this process (asyncio), until Ctrl-C or --duration."""
    from fleet.sim.runner import SimOptions, Simulation

    host, port = _broker(broker)
    _raise_fd_limit(devices)
    options = SimOptions(devices=devices, host=host, port=port, fleet=fleet, groups=group or ["sim"], rate_hz=rate,
                         behaviours=behaviour, command_keys=command_key or [], model=model, version=version,
                         prefix=prefix, sensor=sensor, detectors=detectors,
                         streams=streams, stalled_stream=stalled_stream, second_model=second_model)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with Simulation(options) as simulation:
            kinds: dict[str, int] = {}
            for d in simulation.devices:
                kinds[d.behaviour] = kinds.get(d.behaviour, 0) + 1
            mix = ", ".join(f"{k} {n}" for k, n in sorted(kinds.items()))
            typer.echo(f"{devices} simulated devices online on {host}:{port}, fleet {fleet} ({mix}); Ctrl-C stops")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), duration)

    asyncio.run(main())
