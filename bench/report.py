"""Write a benchmark's results: JSON (everything), a Markdown table (the summary), a PNG chart."""

import json
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel

from bench.cost import InstanceShape, PriceTable
from bench.http_bench import TargetResult
from bench.machine import Machine


class HttpReport(BaseModel):
    machine: Machine
    load_average_after: tuple[float, float, float]
    clips: list[str]
    response_format: str
    prices: PriceTable
    shape: InstanceShape
    targets: list[TargetResult]


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f}"


def _money(value: float | None, digits: int = 5) -> str:
    return "-" if value is None else f"${value:.{digits}f}"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f} %"


def markdown_table(report: HttpReport) -> str:
    lines = [
        "## HTTP benchmark",
        "",
        report.machine.describe(report.load_average_after[0]),
        f"Audio: {', '.join(report.clips)}; response_format={report.response_format}.",
        "",
        "| target | requests | concurrency | errors | min ms | p50 ms | p90 ms | p99 ms | mean ms "
        "| audio s / wall s | server steps (mean ms) | API overhead | WER |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---|",
    ]
    for t in report.targets:
        lat = t.latency
        cells = [
            _ms(getattr(lat, name)) if lat else _ms(None) for name in ("min", "p50", "p90", "p99", "mean")
        ]
        steps = ", ".join(f"{k} {v:.0f}" for k, v in t.server_steps_mean_ms.items()) or "-"
        wer = ", ".join(f"{k} {v * 100:.1f} %" for k, v in t.wer.items()) or "-"
        lines.append(
            f"| {t.name} | {t.requests} | {t.concurrency} | {t.errors} | {' | '.join(cells)} "
            f"| {t.audio_seconds_per_wall_second:.2f} | {steps} "
            f"| {_percent(t.api_overhead)} | {wer} |"
        )
    p, s = report.prices, report.shape
    lines += [
        "",
        f"### Cost ({s.vcpu:g} vCPU, {s.memory_gib:g} GiB, {s.gpus} L4, zonal redundancy "
        f"{'on' if s.zonal_redundancy else 'off'}: {_money(s.cost_per_hour(p), 4)}/h)",
        "",
        "Cost of each target's measured throughput if an instance of this shape delivered it. "
        "Throughput measured on this machine's CPU is not an L4's: read local rows as the method, "
        "the Cloud Run row as the answer.",
        "",
        "| target | self-hosted $/audio min (100 % busy) | OpenAI $/audio min | break-even utilisation "
        "| this run: instance | this run: OpenAI |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for t in report.targets:
        if t.cost is None:
            continue
        c = t.cost
        lines.append(
            f"| {t.name} | {_money(c.self_hosted_per_audio_minute)} | {_money(c.openai_per_audio_minute, 4)} "
            f"| {_percent(c.break_even_utilisation)} | {_money(c.run_instance_cost)} "
            f"| {_money(c.run_openai_cost)} |"
        )
    lines += ["", f"Prices: {p.region}, as of {p.as_of}; source: {p.source}.", ""]
    return "\n".join(lines)


def latency_chart(targets: Sequence[TargetResult], path: Path) -> None:
    """Latency of every request, in the order sent, one line per target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(9, 4.5))
    for target in targets:
        ok = [r for r in target.records if r.error is None]
        axes.plot(
            [r.index + 1 for r in ok], [r.latency_s for r in ok], marker="o", markersize=3, label=target.name
        )
    axes.set_xlabel("request")
    axes.set_ylabel("latency (s)")
    axes.set_ylim(bottom=0)
    axes.set_title("Latency per request")
    axes.grid(alpha=0.3)
    if targets:
        axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write_results(out: Path, name: str, report: BaseModel, text: str) -> None:
    """Every benchmark's results: `<name>.json` (all figures) and `<name>.md` (the table) in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(report.model_dump(mode="json"), indent=2) + "\n")
    (out / f"{name}.md").write_text(text)


def write_http_report(report: HttpReport, out: Path) -> list[Path]:
    paths = [out / "results.json", out / "results.md", out / "latency.png"]
    write_results(out, "results", report, markdown_table(report))
    latency_chart(report.targets, paths[2])
    return paths
