"""`scripts/bench`: the HTTP benchmark's command line (parsing kept apart so that tests can call it)."""

import argparse
import asyncio
import datetime as dt
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from bench.audio import DEFAULT_AUDIO_DIR, find_clips
from bench.cost import InstanceShape, PriceTable
from bench.http_bench import (
    MAX_CONCURRENCY,
    MAX_REQUESTS,
    Options,
    Target,
    TargetResult,
    parse_serve,
    parse_target,
    resolve_token,
    run_target,
)
from bench.machine import describe, load_average
from bench.report import HttpReport, write_http_report


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scripts/bench",
        description="Latency, throughput and cost of OpenAI-compatible transcription endpoints.",
        epilog="Example: scripts/bench --target local=http://127.0.0.1:8080 --audio ../shared/audio/jfk.flac "
        "--requests 25 --concurrency 1 --out benchmarks/http",
    )
    parser.add_argument(
        "--target",
        action="append",
        default=[],
        metavar="NAME=URL",
        help="An endpoint to measure (repeatable). api.openai.com uses OPENAI_API_KEY; "
        "*.run.app uses `gcloud auth print-identity-token` (run once).",
    )
    parser.add_argument(
        "--serve",
        action="append",
        default=[],
        metavar="NAME[:WHISPER_VAR=VALUE,...]",
        help="Start `python -m whisper_api` on a free loopback port with these variables, "
        "measure it, stop it (repeatable; one at a time).",
    )
    parser.add_argument(
        "--auth",
        action="append",
        default=[],
        metavar="NAME=none|gcloud|env:VAR",
        help="Override a target's credentials.",
    )
    parser.add_argument(
        "--audio",
        action="append",
        default=[],
        metavar="FILE_OR_DIR[@START-END]",
        help=f"Audio files, folders or slices (repeatable; default {DEFAULT_AUDIO_DIR}/jfk.flac).",
    )
    parser.add_argument(
        "--requests", type=int, default=10, help=f"Measured requests per target (≤ {MAX_REQUESTS})."
    )
    parser.add_argument(
        "--concurrency", type=int, default=1, help=f"Requests in flight (≤ {MAX_CONCURRENCY})."
    )
    parser.add_argument("--warmup", type=int, default=1, help="Unmeasured requests sent first.")
    parser.add_argument(
        "--response-format", default="json", choices=["json", "text", "srt", "vtt", "verbose_json"]
    )
    parser.add_argument("--model", default="whisper-1")
    parser.add_argument("--language", default=None)
    parser.add_argument("--timeout", type=float, default=300, help="Seconds per request.")
    parser.add_argument("--vcpu", type=float, default=4, help="Instance shape for the cost estimate.")
    parser.add_argument("--memory-gib", type=float, default=16)
    parser.add_argument("--gpus", type=int, default=1)
    parser.add_argument(
        "--zonal-redundancy", action="store_true", help="Price the GPU with zonal redundancy."
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="Output folder (default bench-results/<time>)."
    )
    parser.add_argument("--no-progress", action="store_true")
    return parser


def _pairs(values: Sequence[str], flag: str, parser: argparse.ArgumentParser) -> dict[str, str]:
    pairs = {}
    for value in values:
        name, sep, rest = value.partition("=")
        if not sep:
            parser.error(f"{flag} must be NAME=VALUE, got {value!r}")
        pairs[name] = rest
    return pairs


def parse_args(argv: Sequence[str], environ: Mapping[str, str]) -> tuple[argparse.Namespace, list[Target]]:
    parser = build_parser()
    args = parser.parse_args(argv)
    auth = _pairs(args.auth, "--auth", parser)
    try:
        targets = [parse_target(spec, auth, environ) for spec in args.target]
        targets += [parse_serve(spec) for spec in args.serve]
        args.options = Options(
            requests=args.requests,
            concurrency=args.concurrency,
            warmup=args.warmup,
            model=args.model,
            response_format=args.response_format,
            language=args.language,
            timeout_s=args.timeout,
        )
        args.clips = find_clips(args.audio or [str(DEFAULT_AUDIO_DIR / "jfk.flac")])
        args.shape = InstanceShape(
            vcpu=args.vcpu, memory_gib=args.memory_gib, gpus=args.gpus, zonal_redundancy=args.zonal_redundancy
        )
    except ValueError as error:  # pydantic's ValidationError is a ValueError
        parser.error(str(error).splitlines()[0] if "validation error" not in str(error) else str(error))
    if not targets:
        parser.error("give at least one --target NAME=URL or --serve NAME")
    names = [t.name for t in targets]
    if len(set(names)) != len(names):
        parser.error("target names must be unique")
    unknown = set(auth) - set(names)
    if unknown:
        parser.error(f"--auth names no target: {', '.join(sorted(unknown))}")
    args.out = args.out or Path("bench-results") / dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return args, targets


async def _measure(target: Target, args: argparse.Namespace, environ: Mapping[str, str]) -> TargetResult:
    prices = PriceTable()
    if not target.served:
        token = resolve_token(target.auth, environ)
        return await run_target(
            target, args.clips, args.options, token, args.shape, prices, not args.no_progress
        )
    from bench.serve import serve

    with serve(target.env) as service:
        served = target.model_copy(update={"url": service.url})
        result = await run_target(
            served, args.clips, args.options, None, args.shape, prices, not args.no_progress
        )
    result.seconds_to_ready = service.seconds_to_ready
    return result


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    import os

    environ = os.environ if environ is None else environ
    args, targets = parse_args(sys.argv[1:] if argv is None else argv, environ)
    machine = describe()
    results = []
    for target in targets:
        try:
            results.append(asyncio.run(_measure(target, args, environ)))
        except (ValueError, RuntimeError, OSError) as error:
            print(f"{target.name}: {error}", file=sys.stderr)
            return 1
    report = HttpReport(
        machine=machine,
        load_average_after=load_average(),
        clips=[c.label for c in args.clips],
        response_format=args.options.response_format,
        prices=PriceTable(),
        shape=args.shape,
        targets=results,
    )
    for path in write_http_report(report, args.out):
        print(path)
    return 1 if any(r.errors for r in results) else 0
