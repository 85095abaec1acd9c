"""`edgeferry fleet rollout start|status|pause|resume|promote|abort|history`: staged rollouts from the shell.

These commands only write the database; the leader `fleet serve` worker's controller publishes the desired state
they record on its next tick. Errors are one line with a non-zero exit (printed by edgeferry.cli.main).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import typer

from fleet.config import FleetConfig
from shared.config_loader import load_config, parse_set_pairs

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Staged rollouts gated on live health and model quality, with automatic rollback.")

ConfigOpt = Annotated[Path | None, typer.Option("--config", envvar="EDGEFERRY_FLEET_CONFIG",
                                                help="YAML fleet config.")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Any config value: --set database.url=...")]
JsonOpt = Annotated[Literal["text", "json"], typer.Option("--output", help="text, or json for scripts.")]
RefArg = Annotated[str, typer.Argument(help="Rollout id, or a group name (its running or latest rollout).")]
OptRefArg = Annotated[str | None, typer.Argument(help="Rollout id or group name; default: the latest rollout.")]
ReasonOpt = Annotated[str | None, typer.Option(help="Why, for the audit log.")]

T = TypeVar("T")


def _config(config: Path | None, sets: list[str] | None) -> FleetConfig:
    flags = parse_set_pairs(sets)
    return load_config(FleetConfig, config, flags, known_env_roots=set(FleetConfig.model_fields),
                       flag_labels={k: f"--set {k}" for k in flags})


def _with_ops(config: Path | None, sets: list[str] | None, act: Callable[[Any, FleetConfig], T]) -> T:
    """Run act(RolloutOperations, config) on an open store, closed afterwards."""
    from fleet.db.store import FleetStore
    from fleet.rollout.operations import RolloutOperations

    cfg = _config(config, sets)
    store = FleetStore.open(cfg.database.url, cfg.fleet, cfg.database.pool_size)
    try:
        return act(RolloutOperations(store, trust_device_groups=cfg.controller.trust_device_groups), cfg)
    finally:
        store.close()


def _when(ms: int | None) -> str:
    return "-" if ms is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000))


def _fig(v: Any) -> str:
    return "-" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)


def _line(row: Any) -> str:
    stage = row.plan.stages[row.stage_index]
    return (f"rollout {row.id}: {row.model} v{row.version} to group {row.group}, {row.state}, stage "
            f"{row.stage_index + 1}/{len(row.plan.stages)} {stage.name} ({stage.percent:g} %)")


@app.command()
def start(
    model: Annotated[str, typer.Option(help="Model name.")],
    version: Annotated[int, typer.Option("--model-version", min=1,
                                         help="Version to roll out (checked in the store first).")],
    group: Annotated[str, typer.Option(help="Device group to roll out to.")],
    plan: Annotated[Path | None, typer.Option(help="YAML plan (stages: [...]); default 10% -> 50% -> 100%.")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    json_: JsonOpt = "text",
) -> None:
    """Start a staged rollout; nothing changes on a bad plan, version, empty group or a group already rolling out."""
    from fleet.package_check import PackageChecker
    from fleet.rollout.plan import load_plan
    from shared.signing import load_public_key
    from shared.store_open import open_store

    chosen = load_plan(plan) if plan is not None else None

    def act(ops: Any, cfg: FleetConfig) -> Any:
        checker = PackageChecker(open_store(cfg.packages.store),
                                 [load_public_key(p) for p in cfg.packages.trusted_keys], cfg.packages.allow_unsigned)
        return ops.start(model, version, group, chosen, check_version=checker.check)

    row = _with_ops(config, set_, act)
    if json_ == "json":
        typer.echo(json.dumps({"id": row.id, "state": row.state, "plan": row.plan.model_dump(mode="json")}))
        return
    stages = " -> ".join(f"{s.name} {s.percent:g}%" for s in row.plan.stages)
    typer.echo(f"started {_line(row)}\nstages: {stages}\n"
               "the leader 'edgeferry fleet serve' drives it; follow with 'edgeferry fleet rollout status'")


@app.command()
def status(ref: OptRefArg = None, config: ConfigOpt = None, set_: SetOpt = None, json_: JsonOpt = "text") -> None:
    """Stage, devices per state, each gate's canary and control figures against its threshold, last decision."""
    st = _with_ops(config, set_, lambda ops, _cfg: ops.status(ref))
    if json_ == "json":
        typer.echo(json.dumps(st.as_dict(), indent=2, sort_keys=True))
        return
    from rich.console import Console
    from rich.table import Table

    row = st.rollout
    console = Console(width=160)
    counts = ", ".join(f"{n} {state}" for state, n in st.as_dict()["devices"].items()) or "none yet"
    console.print(_line(row), markup=False, highlight=False)
    console.print(f"devices: {counts}" + (f"; {st.unsent} desired state(s) not published yet" if st.unsent else ""),
                  markup=False, highlight=False)
    console.print(f"last decision: {row.last_decision or '-'}: {row.last_reason}", markup=False, highlight=False)
    if row.last_gates:
        table = Table(title="gates (canary vs control)")
        for col in ("gate", "status", "canary", "control", "threshold", "detail"):
            table.add_column(col)
        for g in row.last_gates:
            table.add_row(g["gate"], g["status"], _fig(g["canary"]), _fig(g["control"]), _fig(g["threshold"]),
                          g["detail"][:80])
        console.print(table)
    failed = [d for d in st.devices if d.state == "failed"]
    for d in failed:
        console.print(f"failed: {d.device_id} ({d.fail_kind}): {d.reason}", markup=False, highlight=False)
    for device, reasons in st.suspects().items():
        console.print(f"suspect: {device}: {'; '.join(reasons)}", markup=False, highlight=False)


@app.command()
def history(ref: OptRefArg = None, config: ConfigOpt = None, set_: SetOpt = None, json_: JsonOpt = "text") -> None:
    """Every transition of a rollout with the figures it was decided on (the audit log)."""
    row, events = _with_ops(config, set_, lambda ops, _cfg: ops.history(ref))
    if json_ == "json":
        typer.echo(json.dumps([{"ts_ms": e.ts_ms, "kind": e.kind, "stage": e.stage_index, "actor": e.actor,
                                "reason": e.reason, "figures": e.figures} for e in events], indent=2))
        return
    typer.echo(_line(row))
    for e in events:
        stage = row.plan.stages[min(e.stage_index, len(row.plan.stages) - 1)].name
        typer.echo(f"{_when(e.ts_ms)}  {e.kind:<13} {stage:<10} {e.actor:<10} {e.reason}")
        for g in e.figures.get("gates", []):
            typer.echo(f"{'':>22}{g['gate']}: {g['status']} canary {_fig(g['canary'])} control "
                       f"{_fig(g['control'])} threshold {_fig(g['threshold'])}")


def _act(name: str, ref: str, reason: str | None, config: Path | None, sets: list[str] | None) -> None:
    def act(ops: Any, _cfg: FleetConfig) -> Any:
        method = getattr(ops, name)
        return method(ref, reason) if reason else method(ref)

    row = _with_ops(config, sets, act)
    typer.echo(f"{name}: {_line(row)}")


@app.command()
def pause(ref: RefArg, reason: ReasonOpt = None, config: ConfigOpt = None, set_: SetOpt = None) -> None:
    """Stop a running rollout where it is (devices keep what they run)."""
    _act("pause", ref, reason, config, set_)


@app.command()
def resume(ref: RefArg, reason: ReasonOpt = None, config: ConfigOpt = None, set_: SetOpt = None) -> None:
    """Run a paused rollout again; its stage deadline restarts."""
    _act("resume", ref, reason, config, set_)


@app.command()
def promote(ref: RefArg, reason: ReasonOpt = None, config: ConfigOpt = None, set_: SetOpt = None) -> None:
    """Skip to the next stage now (complete after the last), whatever the gates say."""
    _act("promote", ref, reason, config, set_)


@app.command()
def abort(ref: RefArg, reason: ReasonOpt = None, config: ConfigOpt = None, set_: SetOpt = None) -> None:
    """End the rollout and return every device it reached to its prior version."""
    _act("abort", ref, reason, config, set_)
