"""Memory and throughput of ``inbec analyze`` on generated mboxes of two sizes.

Writes two mboxes with the sample generator (:func:`write_large_mbox`, by default 10,000
and 200,000 messages) into a temporary folder, runs ``inbec analyze`` on each in a child
process, and prints each run's peak resident memory (the child's and its workers'
largest, from ``wait4``), its messages per second, and how much the peak grew between
the two. Targets: the peak grows by less than 20% and stays under 300 MB.

Run: ``python benchmarks/bench_memory.py [--small 10000] [--large 200000]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from inbec_export.sample.generator import LEGIT_DOMAINS, write_large_mbox

#: Largest peak resident memory allowed, in MB.
TARGET_PEAK_MB = 300

#: Largest growth of the peak between the small and the large mbox, as a fraction.
TARGET_GROWTH = 0.20


def run_analyze(mbox: Path, out: Path) -> tuple[float, float, int]:
    """Run ``inbec analyze`` on ``mbox``; return (seconds, peak RSS in MB, messages)."""
    legit = [arg for domain in LEGIT_DOMAINS for arg in ("--legit", domain)]
    command = [sys.executable, "-m", "inbec_export", "analyze", str(mbox), *legit]
    command += ["--out", str(out), "-q"]
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"inbec analyze failed on {mbox.name}")
    summary = json.loads((out / "summary.json").read_text("utf-8"))
    # ru_maxrss is in kilobytes on Linux.
    return seconds, usage.ru_maxrss / 1024, int(summary["totals"]["messages_read"])


def main() -> None:
    """Write both mboxes, analyze each, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=200_000)
    args = parser.parse_args()

    peaks: list[float] = []
    with tempfile.TemporaryDirectory(prefix="inbec-bench-") as folder:
        root = Path(folder)
        for count in (args.small, args.large):
            mbox = root / f"generated-{count}.mbox"
            size = write_large_mbox(mbox, count)
            seconds, peak, messages = run_analyze(mbox, root / f"case-{count}")
            peaks.append(peak)
            print(
                f"{count} messages ({size / 1e6:.0f} MB mbox): {seconds:.1f} s, "
                f"{messages / seconds:.0f} messages/s, peak RSS {peak:.0f} MB"
            )
            mbox.unlink()
    growth = peaks[1] / peaks[0] - 1
    print(f"peak RSS growth small -> large: {growth:+.1%} (target < {TARGET_GROWTH:.0%})")
    print(f"largest peak: {max(peaks):.0f} MB (target < {TARGET_PEAK_MB} MB)")


if __name__ == "__main__":
    main()
