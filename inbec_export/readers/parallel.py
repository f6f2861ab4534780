"""Read several evidence files at once, in worker processes, and hand their events back
in input order.

:func:`iter_parallel` is what ``iter_evidence(..., workers=N)`` runs for N > 1. Up to N
files are read at the same time, each by a worker process that writes the file's events
to a spool file on disk as it reads them; the caller gets the events of the first file
while the next ones are being read, then those of the second, and so on. The order of
the events is therefore exactly that of one worker, so everything computed from them
(documents, ids, findings of the rules that span messages) is the same; only the wall
time changes. Spooling to disk rather than memory keeps memory flat however far the
readers get ahead of the caller; each spool file is removed once it has been handed on.

A file is read by the same code as in a single process (PST/OST files still go through
their own crash-isolated child), so a damaged file gives the same failures either way.
If a worker itself dies, the events it spooled are kept and one
:class:`~inbec_export.model.ItemFailure` for the file says so.

Limitations: the events must be picklable (they are: plain dataclasses); a worker ahead
of the caller spools what it reads to the temporary folder, which needs room for the
records (not the attachments) of up to N files.
"""

from __future__ import annotations

import logging
import os
import pickle
import shutil
import struct
import tempfile
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import IO, Any

from inbec_export.model import ItemFailure
from inbec_export.readers.isolation import JOIN_TIMEOUT_SECONDS, _context

logger = logging.getLogger(__name__)

#: Shortest and longest pause, in seconds, while the caller waits for a worker to spool
#: the next event (the pause doubles while nothing comes, and is short again after).
MIN_WAIT_SECONDS = 0.0005
MAX_WAIT_SECONDS = 0.05

#: Bytes read from a spool file at once.
SPOOL_READ_BYTES = 1024 * 1024

# Each frame of a spool file: its pickle's length (8 bytes, big-endian), then the pickle
# of ``(kind, payload)``.
_LENGTH = struct.Struct(">Q")
_EVENT = 0
_DONE = 1


@dataclass
class _Job:
    """One file being read by a worker into its spool file."""

    path: Path
    spool: Path
    process: BaseProcess


def iter_parallel(inputs: Iterable[Path], workers: int) -> Iterator[Any]:
    """Yield the events of every evidence file under ``inputs``, reading ``workers``
    files at a time in worker processes; the order is that of ``iter_evidence``.

    Args:
        inputs: files and folders, walked as :func:`~inbec_export.readers.walk_inputs`
            walks them.
        workers: how many files are read at the same time (2 or more).

    Returns:
        An iterator of the events of :func:`~inbec_export.readers.iter_evidence`.
    """
    from inbec_export.readers import walk_inputs

    folder = Path(tempfile.mkdtemp(prefix="inbec-spool-"))
    pending: deque[_Job | ItemFailure] = deque()
    paths = walk_inputs(inputs)
    started = 0
    try:
        exhausted = False
        while True:
            while not exhausted and _running(pending) < workers:
                entry = next(paths, None)
                if entry is None:
                    exhausted = True
                elif isinstance(entry, ItemFailure):
                    pending.append(entry)
                else:
                    pending.append(_start(entry, folder / f"{started}.spool"))
                    started += 1
            if not pending:
                return
            head = pending.popleft()
            if isinstance(head, ItemFailure):
                yield head
            else:
                yield from _drain(head)
    finally:
        for job in pending:
            if isinstance(job, _Job):
                _stop(job.process)
        shutil.rmtree(folder, ignore_errors=True)


def _running(pending: deque[_Job | ItemFailure]) -> int:
    return sum(1 for job in pending if isinstance(job, _Job))


def _start(path: Path, spool: Path) -> _Job:
    context = _context()
    process = context.Process(target=_spool_file, args=(str(path), str(spool)))
    process.start()
    return _Job(path, spool, process)


def _spool_file(path: str, spool: str) -> None:
    """Body of a worker: read one file and write its events, then DONE, to ``spool``."""
    from inbec_export.readers import _read_file

    with open(spool, "wb") as handle:
        for event in _read_file(Path(path)):
            _write(handle, (_EVENT, event))
        _write(handle, (_DONE, None))


def _write(handle: IO[bytes], frame: tuple[int, Any]) -> None:
    body = pickle.dumps(frame, protocol=pickle.HIGHEST_PROTOCOL)
    handle.write(_LENGTH.pack(len(body)) + body)
    # Each frame reaches the file at once, so the caller can hand it on while we read on.
    handle.flush()


def _drain(job: _Job) -> Iterator[Any]:
    """Yield the events of ``job`` as its worker spools them, then reap the worker."""
    buffer = bytearray()
    wait = MIN_WAIT_SECONDS
    done = False
    # The worker creates the spool file when it starts; until then there is nothing to read.
    while not job.spool.exists() and job.process.is_alive():
        time.sleep(wait)
        wait = min(2 * wait, MAX_WAIT_SECONDS)
    try:
        handle = job.spool.open("rb")
    except FileNotFoundError:
        handle = None
    try:
        while handle is not None and not done:
            chunk = handle.read(SPOOL_READ_BYTES)
            if chunk:
                buffer += chunk
                wait = MIN_WAIT_SECONDS
            frames, used = _frames(buffer)
            del buffer[:used]
            for kind, payload in frames:
                if kind == _DONE:
                    done = True
                    break
                yield payload
            if done or chunk:
                continue
            if not job.process.is_alive():
                # One more read: the worker may have written its last frames and exited.
                if not _more(handle, buffer):
                    break
                continue
            time.sleep(wait)
            wait = min(2 * wait, MAX_WAIT_SECONDS)
    finally:
        if handle is not None:
            handle.close()
        if done:
            job.process.join(JOIN_TIMEOUT_SECONDS)
        exitcode = job.process.exitcode
        _stop(job.process)
        job.spool.unlink(missing_ok=True)
    if not done:
        logger.warning("%s: reader worker ended with status %s", job.path, exitcode)
        yield ItemFailure(
            str(job.path),
            None,
            f"reader worker ended (status {exitcode}) before the end of the file; "
            "the rest of the file was not read",
        )


def _more(handle: IO[bytes], buffer: bytearray) -> bool:
    """Append what is left in ``handle`` to ``buffer``; False when nothing was."""
    chunk = handle.read()
    if not chunk:
        return False
    buffer += chunk
    return True


def _frames(buffer: bytearray) -> tuple[list[tuple[int, Any]], int]:
    """The whole frames at the start of ``buffer`` and the bytes they take."""
    frames: list[tuple[int, Any]] = []
    offset = 0
    while len(buffer) - offset >= _LENGTH.size:
        end = offset + _LENGTH.size + _LENGTH.unpack_from(buffer, offset)[0]
        if end > len(buffer):
            break
        frames.append(pickle.loads(buffer[offset + _LENGTH.size : end]))
        offset = end
    return frames, offset


def _stop(process: BaseProcess) -> None:
    """Stop a worker that still runs (the caller stopped early) and reap it."""
    if process.is_alive():
        process.terminate()
        process.join(JOIN_TIMEOUT_SECONDS)
    if process.is_alive():
        process.kill()
        process.join(JOIN_TIMEOUT_SECONDS)
    try:
        process.close()
    except ValueError:
        logger.warning("reader worker %s could not be reaped", process.pid)


def default_workers() -> int:
    """The number of processors this process may use (at least 1)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)
