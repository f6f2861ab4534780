"""Entry point of the ``inbec`` command (and ``python -m inbec_export``).

Loading the command line takes a few tenths of a second. Ctrl-C or SIGTERM in that time
stops the command with one line and the usual exit status, before anything is written,
instead of a traceback from the middle of an import; then the command line's own
handling takes over (see :func:`inbec_export.cli.main`).
"""

from __future__ import annotations

import signal
import sys
from types import FrameType


def _stop_early(signum: int, _frame: FrameType | None) -> None:
    name = signal.Signals(signum).name
    sys.stderr.write(f"{name}: stopped before the run began; nothing was written\n")
    raise SystemExit(128 + signum)


def main() -> None:
    """Run the ``inbec`` command line."""
    signal.signal(signal.SIGINT, _stop_early)
    signal.signal(signal.SIGTERM, _stop_early)
    from inbec_export.cli import main as run

    run()
