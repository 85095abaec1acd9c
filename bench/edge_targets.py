"""`make bench-edge`, last step: edge.md ends with every issue-16 target as met or missed, read from the
results the latency and streams benches wrote in this run, each with the load it ran under.

bench_edge writes edge.md first; the latency and streams figures come later in the same `make bench-edge`, so
this step appends their verdicts (replacing the section a previous run appended) rather than restating them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bench.machine import RESULTS, fmt_load

HEADING = "## Issue 16 targets (one agent, many streams; run to completion)"
SOURCES = (
    ("latency-bench.json", "One paced camera, single stream (`bench/results/latency-bench.md`)"),
    ("streams.json", "Four cameras through one agent (`bench/results/streams.md`)"),
)


def _load_of(doc: dict[str, Any]) -> str:
    """The 1/5/15-minute load average the bench recorded at its start (load_at_start, as every bench read here
    writes it)."""
    load = doc.get("load_at_start")
    return fmt_load(tuple(load)) if isinstance(load, list) and len(load) == 3 else "not recorded"


def section(results: Path) -> str:
    """The targets section from the results files present; a missing file is said, not skipped silently."""
    lines = [HEADING, "", "Why each missed target is missed, with profiles: the closing sections of "
             "`bench/results/streams.md` and `bench/results/latency.md`.", ""]
    for name, title in SOURCES:
        path = results / name
        lines.append(f"### {title}")
        lines.append("")
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            lines += [f"- not measured: {path.name} could not be read ({exc.__class__.__name__})", ""]
            continue
        lines.append(f"Load average (1/5/15 min) at the start: {_load_of(doc)}.")
        lines.append("")
        lines += [f"- {v}" for v in doc.get("verdicts", []) if "target" in v]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    """Replace (or add) the section at the end of edge.md."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, default=RESULTS)
    args = ap.parse_args()
    edge_md = args.results / "edge.md"
    text = edge_md.read_text() if edge_md.exists() else ""
    head = text.split(f"\n{HEADING}\n")[0].rstrip("\n")
    edge_md.write_text(f"{head}\n\n{section(args.results)}")
    print(f"wrote the issue-16 targets into {edge_md}")


if __name__ == "__main__":
    main()
