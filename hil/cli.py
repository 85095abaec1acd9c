"""`edgeferry hil run`: scenarios x variants on the netns target, an SSH target, or the SSH server of the lab
(`ssh-lab`: what `make hil` runs second), then the report under --out."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from hil.errors import HilError

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Hardware-in-the-loop runs of the real agent under network, broker, disk and power faults.")

VARIANTS = ("fp32", "int8", "fp16", "auto")


def _variants(text: str) -> list[str]:
    out = [v.strip() for v in text.split(",") if v.strip()]
    bad = [v for v in out if v not in VARIANTS]
    if not out or bad:
        raise HilError(f"unknown variant {', '.join(bad) or '(none given)'}; choose from {', '.join(VARIANTS)}")
    return out


@app.command()
def run(
    target: Annotated[list[str] | None, typer.Option(
        "--target", help="netns (default), ssh-lab (sshd in the lab's device namespace) or ssh://user@host[:port]; "
                         "repeat to run several.")] = None,
    scenario: Annotated[list[str] | None, typer.Option("--scenario", help="Scenario name (repeatable; default all).")
                        ] = None,
    variants: Annotated[str, typer.Option(help="Comma-separated variants crossed with the scenarios that cross.")
                        ] = "fp32,int8,fp16",
    out: Annotated[Path, typer.Option(help="Report directory.")] = Path("hil-results"),
    key: Annotated[Path | None, typer.Option("--ssh-key", help="SSH private key for ssh:// targets.")] = None,
    remote_python: Annotated[str, typer.Option(help="Interpreter on an ssh:// target.")] = "python3",
    store: Annotated[Path, typer.Option(help="Local store with a trained package (else a tiny one is built).")
                     ] = Path(".store"),
    model: Annotated[str, typer.Option(help="Package name in --store.")] = "digits",
    plan: Annotated[Path | None, typer.Option(help="A fault plan (JSON, hil.plan.FaultPlan) run as one more "
                                                   "scenario against the agent's telemetry.")] = None,
    quick: Annotated[bool, typer.Option(help="Only the quick scenarios (the subset `make test` runs).")] = False,
    seed: Annotated[int, typer.Option(help="Seed of every random choice (crash points, jitter).")] = 0,
) -> None:
    """Run scenarios on each target and write report.md, results.json, junit.xml and PNG plots under --out."""
    from hil.session_run import run_all

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    logging.getLogger("hil.fault_proxy").setLevel(logging.ERROR)  # "cannot reach upstream" is the fault itself
    try:
        chosen = _variants(variants)
    except HilError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    code = run_all(targets=target or ["netns"], scenario_names=scenario, variants=chosen, out=out,
                   key=key, remote_python=remote_python, store=store, model=model, plan_path=plan, quick=quick,
                   seed=seed, echo=lambda line: typer.echo(line, err=line.startswith("error:")))
    raise typer.Exit(code)


@app.command("list")
def list_scenarios() -> None:
    """Every scenario with what it measures."""
    from hil.scenarios import SCENARIOS

    for sc in SCENARIOS.values():
        typer.echo(f"{sc.name:18} {'x variants' if sc.cross else 'once      '} {'quick' if sc.quick else '     '} "
                   f"{sc.about}")
