"""The processes a benchmark starts: one environment that makes the project importable in each, and
each configuration in a process of its own (`python -m bench.<module> --worker ARGS…`), so that its
imports, allocator state and peak RSS are its own and one that crashes loses only itself."""

import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from pydantic import BaseModel

REPO = Path(__file__).resolve().parent.parent
# The first argument of a worker's command line: `python -m bench.<module>` without it is the benchmark's CLI.
WORKER_FLAG = "--worker"


class WorkerFailed(RuntimeError):
    """The worker timed out or exited non-zero; the message is the reason (its last stderr line)."""


def project_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment with `service/` and the repository first on PYTHONPATH (a child
    started with `python -m whisper_api`, `-m bench.…` or `-c` imports the checkout), then `extra`."""
    path = [str(REPO / "service"), str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path), **(extra or {})}


def run_worker(module: str, args: Sequence[str], timeout_s: float, *, own_settings_only: bool = False) -> str:
    """The worker's last line of output: its result, as JSON.

    `own_settings_only` drops this process's WHISPER_* variables, so that only the configuration's
    settings reach the engine."""
    env = project_env()
    if own_settings_only:
        env = {key: value for key, value in env.items() if not key.startswith("WHISPER_")}
    command = [sys.executable, "-m", module, WORKER_FLAG, *args]
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout_s, cwd=REPO)
    except subprocess.TimeoutExpired as error:
        raise WorkerFailed("timed out") from error
    if done.returncode != 0:
        raise WorkerFailed((done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1])
    return done.stdout.strip().splitlines()[-1]


def worker_main(
    worker: Callable[[Sequence[str]], BaseModel],
    cli: Callable[[], int] | None = None,
    argv: Sequence[str] | None = None,
) -> int:
    """A benchmark module's `__main__`: with WORKER_FLAG (run_worker started it), one configuration
    whose result goes to stdout as the last line, JSON; otherwise the module's command line, if any."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == [WORKER_FLAG]:
        print(worker(args[1:]).model_dump_json())
        return 0
    if cli is None:
        print(f"this module runs only as a worker ({WORKER_FLAG} ARGS…)", file=sys.stderr)
        return 2
    return cli()
