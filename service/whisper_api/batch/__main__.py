"""`python -m whisper_api.batch INPUT OUTPUT`: transcribe every recording under INPUT into OUTPUT.

INPUT and OUTPUT are local folders or `gs://bucket/prefix`. The model, engine and limits come from
the same WHISPER_* settings as the server. As a Cloud Run Job task, the task's share of the inputs
follows CLOUD_RUN_TASK_INDEX / CLOUD_RUN_TASK_COUNT. Exit status: 0 when every recording of the
share has its transcripts, 1 when some failed (see the manifest), 2 for a bad command or an
unusable location, 130 when interrupted (rerun to resume).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from types import FrameType
from typing import get_args

from pydantic import ValidationError
from tqdm.contrib.logging import logging_redirect_tqdm

from whisper_api import contract
from whisper_api.batch.manifest import Shard
from whisper_api.batch.storage import StorageError, open_location
from whisper_api.batch.worker import DEFAULT_FORMATS, BatchJob, BatchRunner
from whisper_api.engines.base import Engine
from whisper_api.schemas import ResponseFormat, TranscribeOptions
from whisper_api.settings import Settings, get_settings
from whisper_api.telemetry import configure_logging

logger = logging.getLogger("whisper_api.batch")

USAGE_ERROR = 2
FORMATS = get_args(ResponseFormat)


def parse_args(argv: Sequence[str] | None, environ: dict[str, str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m whisper_api.batch",
        description="Transcribe every recording under INPUT into OUTPUT (local folders or "
        "gs://bucket/prefix), resuming where an earlier run stopped.",
    )
    parser.add_argument("input", help="a folder or gs://bucket/prefix holding the recordings")
    parser.add_argument("output", help="a folder or gs://bucket/prefix for transcripts and the manifest")
    parser.add_argument(
        "--formats",
        default=",".join(DEFAULT_FORMATS),
        help=f"comma-separated, any of {', '.join(FORMATS)} (default: %(default)s)",
    )
    parser.add_argument("--language", help="ISO-639-1 code of the audio's language; detected when omitted")
    parser.add_argument("--prompt", help="text to guide the style, in the audio's language")
    parser.add_argument("--translate", action="store_true", help="translate into English")
    parser.add_argument("--word-timestamps", action="store_true", help="words in verbose_json")
    parser.add_argument(
        "--diarize",
        action="store_true",
        default=environ.get(contract.ENV_BATCH_DIARIZE, "").lower() in ("1", "true"),
        help=f"who spoke when: adds diarized_json and RTTM speaker turns to --formats "
        f"(default: {contract.ENV_BATCH_DIARIZE})",
    )
    parser.add_argument("--force", action="store_true", help="redo recordings that are already done")
    parser.add_argument(
        "--task-index",
        type=int,
        default=int(environ.get("CLOUD_RUN_TASK_INDEX", "0")),
        help="this task's share of the inputs (default: CLOUD_RUN_TASK_INDEX, or 0)",
    )
    parser.add_argument(
        "--task-count",
        type=int,
        default=int(environ.get("CLOUD_RUN_TASK_COUNT", "1")),
        help="tasks sharing the inputs (default: CLOUD_RUN_TASK_COUNT, or 1)",
    )
    parser.add_argument(
        "--run-id",
        default=environ.get("CLOUD_RUN_EXECUTION") or datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"),
        help="names this run's manifest folder (default: the Cloud Run execution, or the UTC time)",
    )
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar (default: on a tty)",
    )
    args = parser.parse_args(argv)
    args.attempt = int(environ.get("CLOUD_RUN_TASK_ATTEMPT", "0"))
    return args


def build_job(args: argparse.Namespace) -> BatchJob:
    formats = [name.strip() for name in args.formats.split(",") if name.strip()]
    unknown = [name for name in formats if name not in FORMATS]
    if unknown or not formats:
        raise ValueError(f"--formats {args.formats!r}: use a comma-separated list of {', '.join(FORMATS)}.")
    if args.diarize:
        formats.append("diarized_json")
    if args.translate and "diarized_json" in formats:
        raise ValueError("diarized_json labels a transcription's speakers: it cannot go with --translate.")
    return BatchJob(
        formats=tuple(dict.fromkeys(formats)),  # type: ignore[arg-type]  # checked just above
        options=TranscribeOptions(
            task="translate" if args.translate else "transcribe",
            language=args.language.strip().lower() if args.language else None,
            prompt=args.prompt or None,
            word_timestamps=args.word_timestamps,
        ),
        force=args.force,
    )


def engine_loader(settings: Settings) -> Engine:
    from whisper_api.engines import load_engine

    logger.info("loading %s %s", settings.engine, settings.model)
    return load_engine(settings)


def _stop_on_signals(cancel: threading.Event) -> None:
    """First SIGTERM/SIGINT: stop the recording in progress within one segment, write the manifest
    and exit (Cloud Run allows 10 s after SIGTERM); second: stop at once."""

    def handle(signum: int, frame: FrameType | None) -> None:
        if cancel.is_set():
            raise KeyboardInterrupt
        cancel.set()
        logger.warning(
            "%s: stopping; the recording in progress is redone by the next run", signal.Signals(signum).name
        )

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


def main(
    argv: Sequence[str] | None = None,
    *,
    settings: Settings | None = None,
    load_engine: Callable[[], Engine] | None = None,
) -> int:
    """`settings` and `load_engine` replace the environment's and the default loader in tests."""
    settings = settings or get_settings()
    configure_logging(settings, stream=sys.stderr)
    args = parse_args(argv, dict(os.environ))
    try:
        job = build_job(args)
        if job.diarize and not (settings.diarization_model and settings.diarization_model.is_file()):
            raise ValueError(
                "diarized_json needs the speaker network: WHISPER_DIARIZATION_MODEL names no file "
                f"({settings.diarization_model}); export it with python -m whisper_api.diarization.export."
            )
        shard = Shard(args.task_index, args.task_count, args.attempt)
        inputs, outputs = open_location(args.input), open_location(args.output)
    except (ValueError, ValidationError, StorageError) as error:
        print(f"error: {error}", file=sys.stderr)
        return USAGE_ERROR
    cancel = threading.Event()
    _stop_on_signals(cancel)
    runner = BatchRunner(
        inputs,
        outputs,
        job,
        settings,
        load_engine or (lambda: engine_loader(settings)),
        shard=shard,
        run_id=args.run_id,
        cancel=cancel,
        progress=args.progress,
    )
    try:
        with logging_redirect_tqdm():  # log lines above the progress bar, not through it
            summary = runner.run()
    except StorageError as error:
        print(f"error: {error}", file=sys.stderr)
        return USAGE_ERROR
    print(summary.describe(), flush=True)
    return summary.exit_code


if __name__ == "__main__":
    sys.exit(main())
