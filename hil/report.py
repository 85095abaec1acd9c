"""Writes a RunReport as report.md (tables, targets met / not met), results.json, junit.xml (one testcase per row)
and PNG plots (matplotlib, Agg): the store-and-forward drain curve, the frame interval around a swap, each camera's
rate around one camera's outage, and the per-stage latency CDFs per variant and link condition."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from hil.results import TARGETS, Row, RunReport


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
    return "" if v is None else str(v)


def write_report(report: RunReport, out: Path) -> list[Path]:
    """Every output file under out; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    plots = write_plots(report, out)
    written = [out / "results.json", out / "junit.xml", out / "report.md"]
    written[0].write_text(report.model_dump_json(indent=2) + "\n")
    written[1].write_bytes(junit_xml(report))
    written[2].write_text(markdown(report, [p.name for p in plots]))
    return [*written, *plots]


def markdown(report: RunReport, plot_names: list[str]) -> str:
    """The human report."""
    lines = [
        "# edgeferry HIL report", "",
        f"- started: {report.started_at}", f"- machine: {report.machine}",
        f"- package: {report.package}, {report.package_bytes} bytes per version", "",
        "## Targets", "", "| target | verdict | detail |", "|---|---|---|",
    ]
    for key, (met, detail) in report.targets().items():
        verdict = "not measured" if met is None else ("**met**" if met else "**NOT met**")
        lines.append(f"| {TARGETS[key]} | {verdict} | {detail} |")
    lines += ["", "## Scenarios", "", "| scenario | variant | target | link | status | time s | key figures |",
              "|---|---|---|---|---|---|---|"]
    for r in report.rows:
        figs = ", ".join(f"{k}={_fmt(v)}" for k, v in r.figures.items() if "|" not in k)
        status = r.status if r.error is None else f"{r.status}: {r.error[:160]}"
        lines.append(f"| {r.scenario} | {r.variant} | {r.target} | {r.link} | {status} | {r.duration_s:g} | {figs} |")
    lat = [r for r in report.rows if r.scenario == "latency_cdf" and r.status != "n/a"]
    if lat:
        lines += ["", "## Per-stage latency (bucket upper bound, ms)", "",
                  "| variant | target | link | stage | p50 <= | p99 <= |", "|---|---|---|---|---|---|"]
        for r in lat:
            for k, v in r.figures.items():
                if "_p50_le_ms|" in k:
                    stage, link = k.split("_p50_le_ms|")
                    p99 = r.figures.get(f"{stage}_p99_le_ms|{link}")
                    lines.append(f"| {r.variant} | {r.target} | {link} | {stage} | {_fmt(v)} | {_fmt(p99)} |")
    lines += _camera_gone_lines(report)
    failed = [r for r in report.rows if r.status in ("fail", "error")]
    if failed:
        lines += ["", "## Failed checks", ""]
        for r in failed:
            for c in r.checks:
                if not c.met:
                    lines.append(f"- {r.scenario}/{r.variant}/{r.target}: {c.name}: {c.detail[:300]}")
            if r.error:
                lines.append(f"- {r.scenario}/{r.variant}/{r.target}: error: {r.error[:300]}")
    notes = sorted({f"{r.scenario}: {n}" for r in report.rows for n in r.notes})
    if notes or report.notes:
        lines += ["", "## How it was measured", "", *(f"- {n}" for n in [*report.notes, *notes])]
    if plot_names:
        lines += ["", "## Plots", "", *(f"![{n}]({n})" for n in plot_names)]
    return "\n".join(lines) + "\n"


def _camera_gone_lines(report: RunReport) -> list[str]:
    """Per-stream table of the multi-camera outage rows: each camera's rate before, while one was gone, after."""
    rows = [r for r in report.rows if r.scenario == "multi_camera_gone" and r.status != "n/a"
            and any(k.startswith("rate_before|") for k in r.figures)]
    if not rows:
        return []
    lines = ["", "## One camera gone among several (results/s per stream, from the published events)", "",
             "| variant | target | stream | results/s before | while one gone | after | while gone / before | "
             "telemetry processed fps before / while gone | capture errors added | connected min while gone |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        streams = [k.split("|", 1)[1] for k in r.figures if k.startswith("rate_before|")]
        for s in streams:
            f = r.figures
            name = f"**{s} (gone)**" if s == f.get("gone_stream") else s
            lines.append(f"| {r.variant} | {r.target} | {name} | {_fmt(f.get(f'rate_before|{s}'))} | "
                         f"{_fmt(f.get(f'rate_gone|{s}'))} | {_fmt(f.get(f'rate_after|{s}'))} | "
                         f"{_fmt(f.get(f'rate_ratio|{s}'))} | {_fmt(f.get(f'tel_fps_before|{s}'))} / "
                         f"{_fmt(f.get(f'tel_fps_gone|{s}'))} | {_fmt(f.get(f'source_errors_added|{s}'))} | "
                         f"{_fmt(f.get(f'connected_min_gone|{s}'))} |")
    return lines


def junit_xml(report: RunReport) -> bytes:
    """JUnit XML: one testsuite per target, one testcase per row (n/a rows are skipped, with the reason)."""
    root = ET.Element("testsuites", name="edgeferry-hil")
    for target in sorted({r.target for r in report.rows}):
        rows = [r for r in report.rows if r.target == target]
        suite = ET.SubElement(root, "testsuite", name=f"hil.{target}", tests=str(len(rows)),
                              failures=str(sum(r.status == "fail" for r in rows)),
                              errors=str(sum(r.status == "error" for r in rows)),
                              skipped=str(sum(r.status == "n/a" for r in rows)),
                              time=f"{sum(r.duration_s for r in rows):.1f}")
        for r in rows:
            case = ET.SubElement(suite, "testcase", classname=f"hil.{target}.{r.scenario}", name=r.variant,
                                 time=f"{r.duration_s:.1f}")
            failed = "; ".join(f"{c.name}: {c.detail}" for c in r.checks if not c.met)
            if r.status == "fail":
                ET.SubElement(case, "failure", message=failed[:500]).text = failed
            elif r.status == "error":
                ET.SubElement(case, "error", message=(r.error or "")[:500]).text = r.error
            elif r.status == "n/a":
                ET.SubElement(case, "skipped", message=r.error or "not applicable")
            ET.SubElement(case, "system-out").text = "\n".join(f"{k}={v}" for k, v in r.figures.items())
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def write_plots(report: RunReport, out: Path) -> list[Path]:
    """The PNGs for rows that carry series."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths: list[Path] = []
    for r in report.rows:
        if r.scenario == "broker_outage" and r.series.get("delivered"):
            fig, ax = plt.subplots(figsize=(8, 4.5))
            for name, style in (("produced", "--"), ("delivered", "-")):
                pts = r.series.get(name, [])
                ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=f"messages {name} (telemetry + results)")
            end = r.series.get("outage", [[0, 0], [0, 0]])[1][0]
            ax.axvspan(0, end, color="red", alpha=0.12, label="broker down")
            ax.set(xlabel="seconds since the broker was killed", ylabel="messages (cumulative)",
                   title=f"Store-and-forward drain: {r.variant} on {r.target} (lost {r.figures.get('lost')})")
            ax.legend()
            paths.append(_save(fig, out / f"drain-{_slug(r.target)}-{_slug(r.variant)}.png"))
        if r.scenario == "hot_swap" and r.series.get("frame_interval_ms"):
            pts = r.series["frame_interval_ms"]
            fig, ax = plt.subplots(figsize=(8, 4.5))
            ax.plot([p[0] for p in pts], [p[1] for p in pts], ".-", lw=0.8, ms=3)
            ax.axvline(0, color="red", ls="--", label="first frame of the new model")
            ax.set(xlabel="seconds from the swap", ylabel="interval to the previous frame (ms)",
                   title=f"Frames around a hot-swap: {r.variant} on {r.target} "
                         f"(lost {r.figures.get('frames_lost')}, longest gap {r.figures.get('longest_gap_ms')} ms)")
            ax.legend()
            paths.append(_save(fig, out / f"swap-{_slug(r.target)}-{_slug(r.variant)}.png"))
        if r.scenario == "multi_camera_gone" and any(k.startswith("rate|") for k in r.series):
            paths.append(_cameras_plot(r, out))
    lat = [r for r in report.rows if r.scenario == "latency_cdf" and r.series]
    for r in lat:
        stages = sorted({k.split("|")[0] for k in r.series})
        fig, axes = plt.subplots(1, len(stages), figsize=(3.2 * len(stages), 3.6), sharey=True, squeeze=False)
        for ax, stage in zip(axes[0], stages, strict=True):
            for key, pts in sorted(r.series.items()):
                if key.split("|")[0] == stage:
                    ax.step([p[0] for p in pts], [p[1] for p in pts], where="post", label=key.split("|")[1])
            ax.set_xscale("log")
            ax.set(title=stage, xlabel="ms (bucket bound)")
        axes[0][0].set_ylabel("share of frames <= x")
        axes[0][-1].legend(fontsize=7, loc="lower right")
        fig.suptitle(f"Per-stage latency CDF: {r.variant} on {r.target}")
        paths.append(_save(fig, out / f"latency-cdf-{_slug(r.target)}-{_slug(r.variant)}.png"))
    return paths


def _cameras_plot(r: Row, out: Path) -> Path:
    """Each stream's results per second around one camera's outage, the outage shaded."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    gone = r.figures.get("gone_stream")
    for key, pts in sorted(r.series.items()):
        if key.startswith("rate|"):
            stream = key.split("|", 1)[1]
            ax.step([p[0] for p in pts], [p[1] for p in pts], "-" if stream == gone else "--", where="post",
                    lw=2 if stream == gone else 1, label=f"{stream} (gone)" if stream == gone else stream)
    end = r.series.get("gone", [[0, 0], [0, 0]])[1][0]
    ax.axvspan(0, end, color="red", alpha=0.12, label="camera unplugged")
    ax.set(xlabel="seconds since the camera was unplugged", ylabel="results per second (1 s bins from x)",
           title=f"One camera gone among {r.figures.get('cameras')}: {r.variant} on {r.target} "
                 f"(others x{_fmt(r.figures.get('others_min_rate_ratio'))}, back after "
                 f"{_fmt(r.figures.get('reconnect_s'))} s)")
    ax.legend(fontsize=8)
    return _save(fig, out / f"cameras-{_slug(r.target)}-{_slug(r.variant)}.png")


def _save(fig: object, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()  # type: ignore[attr-defined]
    fig.savefig(path, dpi=110)  # type: ignore[attr-defined]
    plt.close(fig)  # type: ignore[arg-type]
    return path


def row_summary(r: Row) -> str:
    """One line per row, for the console while a run progresses."""
    figs = ", ".join(f"{k}={_fmt(v)}" for k, v in list(r.figures.items())[:6] if "|" not in k)
    return f"{r.target:5} {r.scenario:17} {r.variant:5} {r.status:5} {r.duration_s:6.1f}s  {figs}" + (
        f"  ({r.error[:200]})" if r.error else "")
