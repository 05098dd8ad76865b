"""Private helpers shared across the package's layers (imports nothing of the package)."""
from __future__ import annotations

import logging
import os
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

PACKAGE_DIR = str(Path(__file__).resolve().parent) + os.sep
LOGGER = logging.getLogger("openmm_starmd")  # set-up phases and run estimates, at INFO level


def warn_at_caller(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn`` attributed to the first stack frame outside this package, so the line shown
    is the user's own call (``StarMDGenerator(...)`` in their script), whatever the depth inside."""
    frame, level = sys._getframe(1), 1
    while frame is not None and str(Path(frame.f_code.co_filename).resolve()).startswith(PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level + 1)


@contextmanager
def messages_to(stream):
    """Show the package's INFO messages (set-up phases, run estimates) as plain lines on ``stream``
    for the duration (the command line and the examples use it; a library user configures logging)."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    level = LOGGER.level
    LOGGER.addHandler(handler)
    LOGGER.setLevel(logging.INFO)
    try:
        yield
    finally:
        LOGGER.removeHandler(handler)
        LOGGER.setLevel(level)


def restore_interrupt() -> None:
    """Let Ctrl-C and ``kill -INT`` stop this process (KeyboardInterrupt) even when it was started in
    the background by a shell (``nohup cmd &``), which makes it ignore SIGINT; the long jobs
    (``starmd simulate``, ``starmd train``, the campaign) stop on it, keeping their finished chunks
    and checkpoints. Only the main thread can set the handler; elsewhere this does nothing."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)
