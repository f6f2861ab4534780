"""Parsing speed: ``inbec analyze`` on the corpus PSTs against a bare libpff loop.

The bare loop (:func:`bare_loop`) is the practical limit of a Python reader on libpff
(``pypff``): it walks every folder and item and reads the same properties our PST reader
reads (the message, recipient and attachment properties it asks for, and every
attachment's data, hashed), and does nothing else. ``inbec analyze`` reads, runs every
rule, maps to ECS and writes the case folder and its report. ``readpst`` (libpst, Debian
``pst-utils``), which converts the same files to mbox in C, is timed for comparison.

The ``--workers`` speed-up is measured on the two largest corpus PSTs as they are, where
starting the program (about a second) is most of the run, and on the same two each given
``--repeat`` times, where reading is.

Each corpus PST is given ``--repeat`` times (copies in a temporary folder, each made
distinct by a few bytes after its end, see :func:`distinct_copies`) to make the times
measurable. Every rate is the
number of messages ``inbec analyze`` reports divided by that tool's time, so the rates
compare the same work. Each tool runs ``--rounds`` times, interleaved, and the best time
of each is kept (other load on the machine only makes a time longer).

A run of ``inbec analyze`` also costs a fixed time, whatever the evidence: starting
Python and the command line, and writing the summary at the end. The bare loop and
``inbec analyze`` are therefore also run on half the copies: the difference between the
two sizes is the time per message once started, the rate a large mailbox is read at,
and what is left over is that fixed time.

Run: ``python benchmarks/bench_parse.py [--corpus DIR] [--repeat 20] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from inbec_export.readers.pst import ATTACHMENT_TAGS, MESSAGE_TAGS, RECIPIENT_TAGS

#: The shared corpus sits beside the project checkout (as the tests expect it).
DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"

#: Chunk read from an attachment while hashing it, in bytes (as the reader does).
CHUNK_BYTES = 1024 * 1024

#: Target: our messages per second over the bare loop's.
TARGET_RATIO = 0.7

#: Target: how much faster two workers read two PSTs than one, on two cores.
TARGET_SPEEDUP = 1.6


def _entries(record_set: Any, wanted: frozenset[int]) -> None:
    for index in range(record_set.get_number_of_entries()):
        entry = record_set.get_entry(index)
        if entry.get_entry_type() in wanted:
            entry.get_value_type()
            entry.get_data()


def _attachment(attachment: Any) -> None:
    for index in range(attachment.get_number_of_record_sets()):
        _entries(attachment.get_record_set(index), ATTACHMENT_TAGS)
    size = attachment.get_size()
    digest = hashlib.sha256()
    if size:
        attachment.seek_offset(0, 0)
        while chunk := attachment.read_buffer(CHUNK_BYTES):
            digest.update(chunk)


def _item(item: Any) -> None:
    for index in range(item.get_number_of_record_sets()):
        _entries(item.get_record_set(index), MESSAGE_TAGS)
    try:
        recipients = item.recipients
    except Exception:  # non-mail items have no recipient table
        recipients = None
    if recipients is not None:
        for index in range(recipients.get_number_of_record_sets()):
            _entries(recipients.get_record_set(index), RECIPIENT_TAGS)
    try:
        count = item.get_number_of_attachments()
    except AttributeError:  # plain items have no attachment API
        count = 0
    for index in range(count):
        _attachment(item.get_attachment(index))


def bare_loop(paths: list[Path]) -> int:
    """Read every item of every file with pypff and nothing else; return the items read."""
    import pypff

    items = 0
    for path in paths:
        store = pypff.file()
        store.open(str(path))
        folders = [store.get_root_folder()]
        while folders:
            folder = folders.pop()
            for index in range(folder.get_number_of_sub_messages()):
                _item(folder.get_sub_message(index))
                items += 1
            folders.extend(
                folder.get_sub_folder(i) for i in range(folder.get_number_of_sub_folders())
            )
        store.close()
    return items


def run_inbec(evidence: Path, out: Path, workers: int) -> int:
    """``inbec analyze`` in a child process, as a user runs it; return messages read."""
    command = [sys.executable, "-m", "inbec_export", "analyze", str(evidence), "-q"]
    command += ["--legit", "acme-corp.com", "--out", str(out), "--workers", str(workers)]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    summary = json.loads((out / "summary.json").read_text("utf-8"))
    return int(summary["totals"]["messages_read"])


def run_readpst(paths: list[Path], out: Path) -> None:
    """``readpst`` on each file, one process per file, into ``out``."""
    for index, path in enumerate(paths):
        target = out / str(index)
        target.mkdir(parents=True)
        subprocess.run(["readpst", "-q", "-o", str(target), str(path)], check=True)
    shutil.rmtree(out)


def seconds(action: Callable[[], object]) -> float:
    """How long ``action`` takes, in seconds."""
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def timed_inbec(evidence: Path, out: Path, workers: int) -> float:
    """Seconds of one :func:`run_inbec` into a new case folder ``out``: the folder of the
    run before is removed first, outside the time (replacing a case's files costs their
    deletion, about 0.15 s for the 60 MB of ``messages.ndjson`` of 10 copies)."""
    shutil.rmtree(out, ignore_errors=True)
    return seconds(lambda: run_inbec(evidence, out, workers))


def distinct_copies(folder: Path, sources: list[Path], copies: int) -> list[Path]:
    """``copies`` sub-folders of ``folder``, each with a copy of every source; the copies,
    in order. A run reads a file whose content it has read before only once, so each
    copy gets its folder's name appended after its last page: libpff reads it as it
    reads the source, and its SHA-256 is its own."""
    made: list[Path] = []
    for copy in range(copies):
        (folder / f"{copy:03d}").mkdir(parents=True)
        for source in sources:
            target = folder / f"{copy:03d}" / source.name
            target.write_bytes(source.read_bytes() + f"{copy:03d}".encode())
            made.append(target)
    return made


def main() -> None:
    """Link the PSTs, time the three readers, print rates and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    sources = sorted((args.corpus / "pst").glob("*.pst"))
    # readpst is a comparison only: without it (Debian's pst-utils) the rest still runs.
    readpst = shutil.which("readpst") is not None
    with tempfile.TemporaryDirectory(prefix="inbec-bench-") as folder:
        root = Path(folder)
        files = distinct_copies(root / "evidence", sources, args.repeat)
        half = max(1, args.repeat // 2)
        half_files = distinct_copies(root / "half", sources, half)
        messages = run_inbec(root / "evidence", root / "warm", 1)
        half_messages = run_inbec(root / "half", root / "warm-half", 1)
        items = bare_loop(files)
        timings: dict[str, list[float]] = {
            "bare": [],
            "inbec": [],
            "inbec2": [],
            "readpst": [],
            "bare-half": [],
            "inbec-half": [],
        }
        for _ in range(args.rounds):
            timings["bare"].append(seconds(lambda: bare_loop(files)))
            timings["inbec"].append(timed_inbec(root / "evidence", root / "case1", 1))
            timings["inbec2"].append(timed_inbec(root / "evidence", root / "case2", 2))
            if readpst:
                timings["readpst"].append(seconds(lambda: run_readpst(files, root / "mbox")))
            timings["bare-half"].append(seconds(lambda: bare_loop(half_files)))
            timings["inbec-half"].append(timed_inbec(root / "half", root / "case-half", 1))
        pair = sorted(sources, key=lambda path: path.stat().st_size)[-2:]
        for copies in (1, args.repeat):
            distinct_copies(root / f"pair-x{copies}", pair, copies)
        pair_times: dict[tuple[int, int], list[float]] = {}
        for _ in range(args.rounds):
            for copies in (1, args.repeat):
                for workers in (1, 2):
                    elapsed = timed_inbec(
                        root / f"pair-x{copies}", root / f"pair{workers}", workers
                    )
                    pair_times.setdefault((copies, workers), []).append(elapsed)
    best = {name: min(values) for name, values in timings.items() if values and "half" not in name}
    rate = {name: messages / seconds for name, seconds in best.items()}
    print(
        f"{len(sources)} PSTs x {args.repeat}: {messages} messages ({items} items), "
        f"best of {args.rounds}"
    )
    print(f"bare pypff loop:          {best['bare']:.2f} s, {rate['bare']:.0f} messages/s")
    print(f"inbec analyze:            {best['inbec']:.2f} s, {rate['inbec']:.0f} messages/s")
    print(f"inbec analyze --workers 2:{best['inbec2']:.2f} s, {rate['inbec2']:.0f} messages/s")
    if readpst:
        print(
            f"readpst (to mbox):        {best['readpst']:.2f} s, {rate['readpst']:.0f} messages/s"
        )
    else:
        print("readpst (to mbox):        not installed (Debian's pst-utils), not compared")
    print(
        f"ratio inbec / bare loop: {rate['inbec'] / rate['bare']:.2f} "
        f"(--workers 2: {rate['inbec2'] / rate['bare']:.2f}; target {TARGET_RATIO})"
    )
    if readpst:
        print(f"ratio inbec / readpst: {rate['inbec'] / rate['readpst']:.2f}")
    # The machine's speed drifts between rounds: each round's own ratio (its tools ran
    # next to each other) is steadier than the ratio of the best times.
    for name, label in (("inbec", "inbec analyze"), ("inbec2", "inbec analyze --workers 2")):
        rounds = [bare / ours for bare, ours in zip(timings["bare"], timings[name], strict=True)]
        print(
            f"{label} / bare loop, each round: {', '.join(f'{r:.2f}' for r in rounds)}; "
            f"median {statistics.median(rounds):.2f}"
        )
    # Once started: the time the second half of the copies added, for each tool.
    marginal = [
        (bare - bare_half) / (ours - ours_half)
        for bare, bare_half, ours, ours_half in zip(
            timings["bare"],
            timings["bare-half"],
            timings["inbec"],
            timings["inbec-half"],
            strict=True,
        )
    ]
    fixed = [
        ours_half - (ours - ours_half) * half_messages / (messages - half_messages)
        for ours, ours_half in zip(timings["inbec"], timings["inbec-half"], strict=True)
    ]
    print(
        f"once started ({args.repeat} copies against {half}), inbec analyze / bare loop, "
        f"each round: {', '.join(f'{r:.2f}' for r in marginal)}; "
        f"median {statistics.median(marginal):.2f}; fixed time of a run "
        f"{statistics.median(fixed):.2f} s"
    )
    for copies in (1, args.repeat):
        one, two = min(pair_times[(copies, 1)]), min(pair_times[(copies, 2)])
        label = "the two largest PSTs" + (f" x {copies}" if copies > 1 else "")
        rounds = [
            a / b for a, b in zip(pair_times[(copies, 1)], pair_times[(copies, 2)], strict=True)
        ]
        print(
            f"{label}: --workers 1 {one:.2f} s, --workers 2 {two:.2f} s, "
            f"speed-up {one / two:.2f}x (target {TARGET_SPEEDUP}x); each round: "
            f"{', '.join(f'{r:.2f}x' for r in rounds)}, median {statistics.median(rounds):.2f}x"
        )


if __name__ == "__main__":
    main()
