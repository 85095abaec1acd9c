"""What every benchmark writes about the machine it ran on, and how it writes its results (one place, not four).

The header names the CPU, its instruction-set flags of note, the cores this process may use, the memory and the load
average,
because every figure in bench/results/ is only as good as the machine and its load when it was measured.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil

from edge.runtime_bench import cpu_model_name

RESULTS = Path(__file__).resolve().parent / "results"
FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_int8",
         "amx_tile", "amx_fp16", "asimd")


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> list[str]:
    """The instruction-set flags of note that /proc/cpuinfo lists (what lscpu prints as Flags)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return []
    line = next((ln for ln in text.splitlines() if ln.startswith(("flags", "Features"))), "")
    have = set(line.partition(":")[2].split())
    return [f for f in FLAGS if f in have]


def fmt_load(load: tuple[float, float, float]) -> str:
    """1/5/15-minute load averages."""
    return "/".join(f"{x:.2f}" for x in load)


def machine(load: Sequence[float] | None = None) -> dict[str, Any]:
    """CPU model, flags, usable cores, memory and the load average (`load`, a bench's own reading, or now), for a
    results file's JSON."""
    return {"cpu": cpu_model_name() or "unknown CPU", "flags": cpu_flags(), "cores": len(os.sched_getaffinity(0)),
            "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "load": list(os.getloadavg() if load is None else load)}


def load1() -> float:
    """The 1-minute load average now, for a figure that carries the load it was taken under."""
    return os.getloadavg()[0]


def uptime(load: Sequence[float] | None = None) -> str:
    """`uptime`'s clock and load averages (`load`, a bench's own reading, or now), for a results file's before/after;
    from /proc, no procps needed."""
    la = os.getloadavg() if load is None else load
    return f"{time.strftime('%H:%M:%S', time.gmtime())} UTC load average: {la[0]:.2f}, {la[1]:.2f}, {la[2]:.2f}"


def machine_line(doc: dict[str, Any], when: str = "when measured") -> str:
    """The Markdown line a results file starts with, from machine()'s fields; `when` says when the load was read."""
    load = doc.get("load")
    tail = f"; load average {fmt_load(tuple(load))} (1/5/15 min) {when}" if load else ""
    memory = f", {doc['memory_gib']:g} GiB" if doc.get("memory_gib") else ""  # older results files lack it
    have = doc.get("flags")
    absent = ", ".join(f for f in FLAGS if f not in (have or ())) or "none"
    flags = "flags not recorded" if have is None else f"flags: {', '.join(have) or 'none of note'} (absent: {absent})"
    return f"CPU: {doc['cpu']}; {flags}; {doc['cores']} cores{memory}{tail}"


def write_results(name: str, doc: dict[str, Any], markdown: str, out: Path = RESULTS) -> Path:
    """bench/results/<name>.json and .md (printed too); returns the Markdown file's path."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
    path = out / f"{name}.md"
    path.write_text(markdown)
    print(markdown)
    return path
