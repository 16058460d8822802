"""Each benchmark configuration in a process of its own (`python -m bench.<module> CONFIG ARGS…`), so
that its imports, allocator state and peak RSS are its own and one that crashes loses only itself."""

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


class WorkerFailed(RuntimeError):
    """The worker timed out or exited non-zero; the message is the reason (its last stderr line)."""


def run_worker(module: str, args: Sequence[str], timeout_s: float, *, own_settings_only: bool = False) -> str:
    """The worker's last line of output: its result, as JSON.

    `own_settings_only` drops this process's WHISPER_* variables, so that only the configuration's
    settings reach the engine."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "service"), str(REPO)]))
    if own_settings_only:
        env = {key: value for key, value in env.items() if not key.startswith("WHISPER_")}
    command = [sys.executable, "-m", module, *args]
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout_s, cwd=REPO)
    except subprocess.TimeoutExpired as error:
        raise WorkerFailed("timed out") from error
    if done.returncode != 0:
        raise WorkerFailed((done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1])
    return done.stdout.strip().splitlines()[-1]
