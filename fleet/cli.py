"""`edgeferry fleet ...`: serve the control plane, list and show devices, manage groups, deploy and roll back.

Every command reads the same fleet config (--config, EDGEFERRY_FLEET_CONFIG; any option as --set section.key=v).
Errors are one line with a non-zero exit (printed by edgeferry.cli.main).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from fleet.config import FleetConfig
from fleet.errors import FleetConfigError
from fleet.registry import STATUSES, DeviceRecord
from shared.broker_address import parse_broker
from shared.config_loader import load_config, parse_set_pairs

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, help="The fleet control plane.")
groups_app = typer.Typer(help="Device groups: list, assign, unassign.", invoke_without_command=True)
app.add_typer(groups_app, name="groups")
devices_app = typer.Typer(help="List devices, or remove one (devices remove DEVICE).", invoke_without_command=True)
app.add_typer(devices_app, name="devices")

if importlib.util.find_spec("fleet.rollout.cli") is not None:
    from fleet.rollout.cli import app as rollout_app

    app.add_typer(rollout_app, name="rollout")

ConfigOpt = Annotated[Path | None, typer.Option("--config", envvar="EDGEFERRY_FLEET_CONFIG",
                                                help="YAML fleet config.")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Any config value: --set database.url=...")]
JsonOpt = Annotated[Literal["table", "json"], typer.Option("--output", help="table, or json for scripts.")]
BrokerOpt = Annotated[str | None, typer.Option(
    "--broker", help="MQTT broker as HOST[:PORT] (broker.host, broker.port); beats the config file.")]


def load(config: Path | None, sets: list[str] | None, broker: str | None = None) -> FleetConfig:
    """The fleet config from file, environment and --set flags; --broker HOST[:PORT] over all of them."""
    flags: dict[str, Any] = dict(parse_set_pairs(sets))
    labels = {k: f"--set {k}" for k in flags}
    if broker is not None:
        try:
            host, port = parse_broker(broker)
        except ValueError as exc:
            raise FleetConfigError(str(exc)) from exc
        flags["broker.host"] = host
        labels["broker.host"] = "--broker"
        if port is not None:
            flags["broker.port"] = port
            labels["broker.port"] = "--broker"
    return load_config(FleetConfig, config, flags, known_env_roots=set(FleetConfig.model_fields),
                       flag_labels=labels)


def _store(cfg: FleetConfig) -> Any:
    from fleet.db.store import FleetStore

    return FleetStore.open(cfg.database.url, cfg.fleet, cfg.database.pool_size)


def _control(cfg: FleetConfig) -> tuple[Any, Any, Any]:
    """(FleetControl, store, broker connection): the broker is connected before anything can change."""
    from fleet.control import FleetControl
    from fleet.mqtt_client import FleetMqtt
    from fleet.package_check import PackageChecker
    from shared.signing import load_private_key, load_public_key
    from shared.store_open import open_store

    if cfg.commands.key is None:
        raise FleetConfigError("commands.key is not set: the fleet signs desired state and commands with it "
                               "(create one with 'edgeferry keygen .keys/fleet' and --set commands.key=.keys/fleet)")
    key = load_private_key(cfg.commands.key)
    checker = PackageChecker(open_store(cfg.packages.store), [load_public_key(p) for p in cfg.packages.trusted_keys],
                             cfg.packages.allow_unsigned)
    store = _store(cfg)
    mqtt = FleetMqtt(cfg.broker)
    try:
        mqtt.connect()
    except BaseException:
        store.close()
        raise
    return FleetControl(store, checker, mqtt, key, cfg.commands.expires_in_s), store, mqtt


def _ago(now_ms: int, ms: int | None) -> str:
    if ms is None:
        return "never"
    s = max(0, now_ms - ms) / 1000
    return f"{s:.0f} s ago" if s < 120 else f"{s / 60:.0f} min ago" if s < 7200 else f"{s / 3600:.1f} h ago"


def _row(rec: DeviceRecord, entries: list[Any]) -> dict[str, Any]:
    from fleet.desired import converged, desired_for

    entry = desired_for(rec, entries)
    d = asdict(rec)
    d.update(desired_model=entry.model if entry else None, desired_version=entry.version if entry else None,
             desired_channel=entry.channel if entry else None, converged=converged(rec, entry))
    return d


@app.command()
def serve(config: ConfigOpt = None, set_: SetOpt = None, broker: BrokerOpt = None) -> None:
    """Run a control-plane worker: ingest, leader lease, desired state, rollout controller (SIGTERM stops)."""
    from fleet.service import FleetService

    cfg = load(config, set_, broker)
    logging.basicConfig(level=cfg.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    service = FleetService(cfg)
    service.install_signal_handlers()
    try:
        service.start()
        service.run()
    finally:
        service.stop()


@devices_app.callback()
def devices(
    ctx: typer.Context,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    group: Annotated[str | None, typer.Option(help="Only devices in this group.")] = None,
    status: Annotated[str | None, typer.Option(help=f"Only devices with this status ({', '.join(STATUSES)}).")] = None,
    version: Annotated[int | None, typer.Option("--model-version", help="Only devices serving this model version.")
                       ] = None,
    json_: JsonOpt = "table",
) -> None:
    """List devices: status, groups, what they run, what is desired, whether they converged, messages refused."""
    if ctx.invoked_subcommand is not None:
        ctx.obj = (config, set_)
        return
    if status is not None and status not in STATUSES:
        raise FleetConfigError(f"--status {status!r} is not one of {', '.join(STATUSES)}")
    cfg = load(config, set_)
    store = _store(cfg)
    try:
        recs = store.list_devices(group=group, status=status, version=version)  # type: ignore[arg-type]
        entries = store.desired.all()
        rows = [_row(r, entries) for r in recs]
        streams = store.streams.all()
        for r in rows:
            r["streams"] = streams[r["device_id"]].as_json() if r["device_id"] in streams else None
    finally:
        store.close()
    if json_ == "json":
        typer.echo(json.dumps(rows, indent=2, sort_keys=True))
        return
    from rich.console import Console
    from rich.table import Table

    now = int(time.time() * 1000)
    table = Table(title=f"fleet {cfg.fleet}: {len(rows)} device(s)")
    for col in ("device", "status", "groups", "model", "follows", "desired", "converged", "last seen", "restarts",
                "agent", "refused"):
        table.add_column(col)
    for r in rows:
        model = f"{r['model_name'] or '-'} v{r['model_version']}" if r["model_version"] else "-"
        desired = (f"v{r['desired_version']}" if r["desired_version"] else
                   f"channel {r['desired_channel']}" if r["desired_channel"] else "-")
        conv = {True: "yes", False: "no", None: "-"}[r["converged"]]
        follows = {None: "-", "desired": "desired"}.get(r["follow"], f"{r['follow']} ({r['channel'] or 'stable'})")
        table.add_row(r["device_id"], r["status"], ",".join(r["groups"]) or "-", model, follows, desired, conv,
                      _ago(now, r["last_seen_ms"]), str(r["restarts"]), r["agent_version"] or "-",
                      str(r["refused"] + r["shed"]) if r["refused"] or r["shed"] else "-")
    Console(width=170).print(table)


@devices_app.command("remove")
def remove(
    ctx: typer.Context,
    device: Annotated[str, typer.Argument(help="Device id.")],
    config: ConfigOpt = None,
    set_: SetOpt = None,
    broker: BrokerOpt = None,
) -> None:
    """Forget a device: clear its retained topics on the broker, then delete its record, telemetry and commands.

    Clearing writes in the device's name: with the shipped broker ACL only the operators' user may (run it as
    --set broker.username=edgeferry-ops --set broker.password=...). The fleet's own user is refused: the output
    names the topics the broker kept, and the registry ignores them until the device publishes again.
    """
    from fleet.device_removal import remove_device
    from fleet.mqtt_client import FleetMqtt

    outer = ctx.obj or (None, None)
    cfg = load(config or outer[0], (outer[1] or []) + (set_ or []), broker)
    store = _store(cfg)
    mqtt = FleetMqtt(cfg.broker)
    try:
        mqtt.connect()
        done = remove_device(store, mqtt, device)
    finally:
        mqtt.close()
        store.close()
    typer.echo(f"removed {device} from fleet {cfg.fleet}" + ("" if done.known else " (it was not registered)")
               + f"; {done.summary()}")


@app.command()
def show(
    device: Annotated[str, typer.Argument(help="Device id.")],
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Everything known about one device, its desired state, latest telemetry and recent commands (JSON)."""
    cfg = load(config, set_)
    store = _store(cfg)
    try:
        rec = store.device(device)
        row = _row(rec, store.desired.all())
        now = store.clock()
        window = store.telemetry_window(device, now - 3_600_000, now + 60_000)
        row["latest_telemetry"] = asdict(window[-1]) if window else None
        row["commands"] = [asdict(c) for c in store.commands.recent(device)]
    finally:
        store.close()
    typer.echo(json.dumps(row, indent=2, sort_keys=True))


@groups_app.callback()
def groups(ctx: typer.Context, config: ConfigOpt = None, set_: SetOpt = None, json_: JsonOpt = "table") -> None:
    """List groups and their devices (from the agents' config and assignments made here)."""
    if ctx.invoked_subcommand is not None:
        ctx.obj = (config, set_)
        return
    store = _store(load(config, set_))
    try:
        found = store.groups()
    finally:
        store.close()
    if json_ == "json":
        typer.echo(json.dumps(found, indent=2))
    elif not found:
        typer.echo("no groups yet")
    for name, members in found.items() if json_ != "json" else ():
        typer.echo(f"{name}: {len(members)} device(s): {', '.join(members)}")


def _assign(ctx: typer.Context, device: str, group: str, add: bool, config: Path | None,
            sets: list[str] | None) -> None:
    from fleet.control import assign_group

    outer = ctx.obj or (None, None)
    store = _store(load(config or outer[0], (outer[1] or []) + (sets or [])))
    try:
        changed = assign_group(store, device, group, add)
    finally:
        store.close()
    verb = "assigned to" if add else "unassigned from"
    typer.echo(f"{device} {verb} {group}" + ("" if changed else " (no change)"))


@groups_app.command("assign")
def assign(ctx: typer.Context, device: Annotated[str, typer.Argument(help="Device id.")],
           group: Annotated[str, typer.Argument(help="Group name.")], config: ConfigOpt = None,
           set_: SetOpt = None) -> None:
    """Put a device into a group (in addition to the groups of its own config)."""
    _assign(ctx, device, group, True, config, set_)


@groups_app.command("unassign")
def unassign(ctx: typer.Context, device: Annotated[str, typer.Argument(help="Device id.")],
             group: Annotated[str, typer.Argument(help="Group name.")], config: ConfigOpt = None,
             set_: SetOpt = None) -> None:
    """Take back an assignment made here (groups from the device's own config stay)."""
    _assign(ctx, device, group, False, config, set_)


@app.command()
def deploy(
    model: Annotated[str, typer.Option(help="Model name.")],
    version: Annotated[int | None, typer.Option("--model-version", min=1,
                                                help="Version; it must exist and verify in the store.")] = None,
    channel: Annotated[str | None, typer.Option(
        help="Instead of a version: the pointer channel to follow (stable, canary, ...); its signed pointer must "
        "exist and name a version that verifies.")] = None,
    device: Annotated[str | None, typer.Option(help="One device.")] = None,
    group: Annotated[str | None, typer.Option(help="Every device of a group.")] = None,
    allow_downgrade: Annotated[bool, typer.Option(help="Allow going below a version a device served.")] = False,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    broker: BrokerOpt = None,
) -> None:
    """Deploy directly (no stages): set the desired version (or channel), publish it retained and signed; a version
    also goes out as a signed deploy."""
    cfg = load(config, set_, broker)
    control, store, mqtt = _control(cfg)
    try:
        result = control.deploy(model, version, device=device, group=group, allow_downgrade=allow_downgrade,
                                channel=channel)
    finally:
        mqtt.close()
        store.close()
    typer.echo(f"deployed {result.model} {result.target} to {result.scope} {result.name}: "
               f"{len(result.devices)} device(s) ({', '.join(result.devices) or 'none: device overrides win'})")


@app.command()
def rollback(
    device: Annotated[str | None, typer.Option(help="One device.")] = None,
    group: Annotated[str | None, typer.Option(help="Every device of a group.")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    broker: BrokerOpt = None,
) -> None:
    """Return a device or group to the version desired before the current one."""
    cfg = load(config, set_, broker)
    control, store, mqtt = _control(cfg)
    try:
        result = control.rollback(device=device, group=group)
    finally:
        mqtt.close()
        store.close()
    typer.echo(f"rolled {result.scope} {result.name} back to {result.model} v{result.version}: "
               f"{len(result.devices)} device(s) ({', '.join(result.devices)})")
