"""
Named points where the reliability suite kills a worker on purpose, so that a crash lands at an exact
moment (right after a submission, in the middle of a download). Inert unless the environment variable
``HAPPYHORSE_FAULT_POINT`` names the point; it then fires on the first try of a task only, so the
retry can show what it does about the crash.
"""

from __future__ import annotations

import os
import signal

ENV_VAR = "HAPPYHORSE_FAULT_POINT"
AFTER_SUBMIT = "after_submit"
DURING_DOWNLOAD = "during_download"


def fault_point(name: str, try_number: int) -> None:
    if try_number == 1 and os.environ.get(ENV_VAR) == name:
        os.kill(os.getpid(), signal.SIGKILL)
