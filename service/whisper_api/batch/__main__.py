"""`python -m whisper_api.batch INPUT OUTPUT` (see `whisper_api.batch.cli`).

Ctrl-C while the CLI's imports load (a second or more on a busy machine) ends the process quietly
with the status of an interrupted run, not with a traceback; the CLI installs its own handlers
as soon as it starts.
"""

import signal
import sys
from types import FrameType

from whisper_api.batch import INTERRUPTED


def _stop_quietly(signum: int, frame: FrameType | None) -> None:
    sys.exit(INTERRUPTED)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, _stop_quietly)
    signal.signal(signal.SIGTERM, _stop_quietly)
    from whisper_api.batch.cli import main

    sys.exit(main())
