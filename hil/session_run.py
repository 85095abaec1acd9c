"""The whole of `edgeferry hil run`: every input checked before anything starts (targets, scenarios, variants,
plan, root, keys), then each target in turn, rows printed as they finish, and the report written even when a
target breaks half-way. Exit status: 0 all rows passed or n/a, 1 a row failed, 2 bad input."""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hil.device import DeviceTarget
from hil.errors import HilError
from hil.harness import netns_target, new_report, run_target
from hil.netns import netns_unavailable
from hil.packages import load_package
from hil.pair import PairHarness
from hil.plan import FaultPlan, parse_plan
from hil.report import row_summary, write_report
from hil.results import RunReport
from hil.scenarios import SCENARIOS, Scenario, plan_scenario, select
from hil.ssh_target import SshAddress, SshDevice, build_wheel, lab_ssh_target

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TargetSpec:
    """A parsed --target."""

    name: str  # netns, ssh (lab), ssh (remote)
    address: SshAddress | None = None


def parse_target(text: str) -> TargetSpec:
    """netns, ssh-lab or ssh://user@host[:port]."""
    if text == "netns":
        return TargetSpec("netns")
    if text == "ssh-lab":
        return TargetSpec("ssh")
    if text.startswith("ssh://"):
        return TargetSpec("ssh", SshAddress.parse(text))
    raise HilError(f"unknown target {text!r}; use netns, ssh-lab or ssh://user@host[:port]")


def _ssh_lab_factory(wheel: Path) -> Callable[[PairHarness, Path], DeviceTarget]:
    """Targets that log into an sshd in the lab's device namespace, with the wheel installed there."""

    def make(lab: PairHarness, workdir: Path) -> DeviceTarget:
        return lab_ssh_target(lab, workdir, wheel)

    return make


def run_all(*, targets: list[str], scenario_names: list[str] | None, variants: list[str], out: Path,
            key: Path | None, remote_python: str, store: Path, model: str, plan_path: Path | None, quick: bool,
            seed: int, echo: Callable[[str], None]) -> int:
    """Check every input, run every target, write the report; the exit status."""
    try:
        specs = [parse_target(t) for t in targets]
        scenarios: list[Scenario] = select(scenario_names)
        if quick:
            scenarios = [sc for sc in scenarios if sc.quick]
        plan: FaultPlan | None = None
        if plan_path is not None:
            try:
                plan = parse_plan(plan_path.read_text())
            except OSError as exc:
                raise HilError(f"cannot read fault plan {plan_path}: {exc.strerror}") from exc
            scenarios.append(plan_scenario(plan))
        why = netns_unavailable()
        if why is not None:
            raise HilError(f"the HIL lab needs network namespaces: {why}")
        for spec in specs:
            if spec.address is not None:
                if key is None:
                    raise HilError("an ssh:// target needs --ssh-key PATH (the private key to log in with)")
                # Fails in one line when unreachable, the key is refused, or Python is older than 3.10.
                SshDevice(spec.address, key, remote_python=remote_python).connect().close()
                raise HilError(f"{spec.address.host} answers and qualifies, but scenarios on a device outside this "
                               "machine are not supported yet: the lab's cloud side lives in a network namespace "
                               "the device cannot reach; use --target ssh-lab here")
        base = load_package(store, model)
    except HilError as exc:
        echo(f"error: {exc}")
        return 2
    report = new_report(base)
    if plan is not None:
        report.notes.append(f"fault plan {plan.name!r} from {plan_path}")
    build_dir = Path(tempfile.mkdtemp(prefix="edgeferry-hil-wheel-"))
    code = 0
    try:
        for spec in specs:
            echo(f"hil: target {spec.name}: {len(scenarios)} scenarios x variants {','.join(variants)}")
            try:
                if spec.name == "netns":
                    run_target("netns", netns_target, scenarios, variants, base, report, out, seed,
                               on_row=lambda r: echo(row_summary(r)))
                else:
                    wheel = build_wheel(build_dir)
                    report.notes.append(f"ssh target: wheel {wheel.name} installed into a venv on the device "
                                        "whose dependencies come from the harness's site-packages (same machine, "
                                        "no internet in the namespace)")
                    run_target("ssh", _ssh_lab_factory(wheel), scenarios, variants, base, report, out, seed,
                               on_row=lambda r: echo(row_summary(r)))
            except HilError as exc:
                echo(f"error: target {spec.name}: {exc}")
                report.notes.append(f"target {spec.name} stopped: {exc}")
                code = 1
    except KeyboardInterrupt:
        echo("hil: interrupted; everything it started was removed")
        code = 130
    finally:
        shutil.rmtree(build_dir, ignore_errors=True)
        files = write_report(report, out)
        echo(f"hil: wrote {', '.join(str(p) for p in files[:3])} and {len(files) - 3} plots")
        _print_targets(report, echo)
    if code == 0 and any(r.status in ("fail", "error") for r in report.rows):
        code = 1
    return code


def _print_targets(report: RunReport, echo: Callable[[str], None]) -> None:
    from hil.results import TARGETS

    for key, (met, detail) in report.targets().items():
        verdict = "not measured" if met is None else ("met" if met else "NOT MET")
        echo(f"target {TARGETS[key]}: {verdict}" + ("" if met else f" ({detail[:200]})"))


__all__ = ["SCENARIOS", "run_all"]
