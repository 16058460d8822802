"""Run a script on the project's own interpreter (`.venv`), whichever `python3` started it.

`scripts/bench …` from a plain shell otherwise meets the system Python, which lacks the project's
dependencies. `make test` or `make run` creates `.venv`.
"""

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV = REPO / ".venv"


def enter() -> None:
    """Re-execute the calling script under `.venv/bin/python` if needed; put the project on sys.path."""
    python = VENV / "bin" / "python"
    # Without a .venv (not made yet, or dependencies installed another way) the current one is used.
    if python.exists() and Path(sys.prefix).resolve() != VENV.resolve():
        os.execv(python, [str(python), *sys.argv])  # noqa: S606 (argv as given, no shell)
    sys.path[:0] = [str(REPO), str(REPO / "service")]
