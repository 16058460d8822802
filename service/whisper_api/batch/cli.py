"""The batch CLI, `python -m whisper_api.batch INPUT OUTPUT`: every recording under INPUT → OUTPUT.

INPUT and OUTPUT are local folders or `gs://bucket/prefix`. The model, engine and limits come from
the same WHISPER_* settings as the server. As a Cloud Run Job task, the task's share of the inputs
follows CLOUD_RUN_TASK_INDEX / CLOUD_RUN_TASK_COUNT. Exit status: 0 when every recording of the
share has its transcripts, 1 when some failed (see the manifest), 2 for a bad command or an
unusable location, 130 when interrupted (rerun to resume).

The run itself goes on a thread of its own, so that SIGINT/SIGTERM are handled at once whatever
the run is doing (listing, decoding, inside the engine, waiting on storage): the run is asked to
stop, gets STOP_GRACE_S to do so, and then the process writes the manifest, prints the summary
and exits 130 without waiting for the work in progress, which the next run redoes.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from types import FrameType
from typing import NoReturn, get_args

from pydantic import ValidationError
from tqdm.contrib.logging import logging_redirect_tqdm

from whisper_api import contract
from whisper_api.batch import INTERRUPTED
from whisper_api.batch.manifest import Shard
from whisper_api.batch.names import shown_name
from whisper_api.batch.storage import StorageError, open_location
from whisper_api.batch.worker import DEFAULT_FORMATS, BatchJob, BatchRunner, Summary
from whisper_api.engines.base import Engine
from whisper_api.schemas import ResponseFormat, TranscribeOptions
from whisper_api.settings import Settings, get_settings
from whisper_api.telemetry import configure_logging

logger = logging.getLogger("whisper_api.batch")

USAGE_ERROR = 2
STOP_GRACE_S = 0.5  # for the run to stop by itself after a signal; the whole stop stays within 1 s
LAST_FLUSH_S = 0.25  # for the manifest's last write when the run did not stop in time
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
    """SIGTERM/SIGINT: stop within a second (Cloud Run allows 10 s after SIGTERM); another signal
    while stopping changes nothing."""

    def handle(signum: int, frame: FrameType | None) -> None:
        if cancel.is_set():
            return
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
        print(f"error: {shown_name(str(error))}", file=sys.stderr)
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
    started = time.perf_counter()
    try:
        with logging_redirect_tqdm():  # log lines above the progress bar, not through it
            summary = run_until_stopped(runner, cancel)
    except StorageError as error:
        print(f"error: {shown_name(str(error))}", file=sys.stderr)
        return USAGE_ERROR
    if summary is None:  # stopped while the run was still at work
        _exit_now(_abandon(runner, time.perf_counter() - started))
    if cancel.is_set():  # stopped in time; leave now all the same (see _exit_now)
        _exit_now(summary.describe())
    print(summary.describe(), flush=True)
    return summary.exit_code


def run_until_stopped(runner: BatchRunner, cancel: threading.Event) -> Summary | None:
    """The run's summary, or None when a signal came and the run did not stop within the grace."""
    finished = threading.Event()
    outcome: list[Summary | BaseException] = []

    def work() -> None:
        try:
            outcome.append(runner.run())
        except BaseException as error:
            outcome.append(error)
        finally:
            finished.set()

    # A daemon: an abandoned run must not keep the process alive.
    threading.Thread(target=work, name="batch-run", daemon=True).start()
    while not finished.wait(0.05):  # the signal handlers run between these waits
        if cancel.is_set() and not finished.wait(STOP_GRACE_S):
            return None
    result = outcome[0]
    if isinstance(result, BaseException):
        raise result
    return result


def _abandon(runner: BatchRunner, wall_seconds: float) -> str:
    """What an interrupted run reports when its work is left behind: the counts so far (what was
    not committed counts as not reached) and the manifest, if storage takes it in time."""
    summary = runner.summary
    if summary is None:
        return (
            f"interrupted before the inputs were listed: nothing was done\n"
            f"manifest: {shown_name(runner.outputs.url_of(runner.manifest.name))}\n"
            "interrupted: rerun the same command to resume"
        )
    summary.interrupted = True
    summary.wall_seconds = wall_seconds
    summary.model_load_seconds = runner.model_load_seconds
    flush = threading.Thread(target=runner.manifest.flush, args=(time.perf_counter(),), daemon=True)
    flush.start()
    flush.join(LAST_FLUSH_S)
    if flush.is_alive():
        logger.warning("storage did not take the manifest in time; the done markers still hold the progress")
    return summary.describe()


def _exit_now(report: str) -> NoReturn:
    """Print the report and leave without joining the threads still at work (a decoder, the
    engine, a storage call): whatever they had not committed is redone by the next run. Nor
    through Python's exit, which puts the signal handlers back to their defaults: a second Ctrl-C
    then killed the process with SIGINT instead of letting it exit 130."""
    print(report, flush=True)
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stderr.flush()
    os._exit(INTERRUPTED)
