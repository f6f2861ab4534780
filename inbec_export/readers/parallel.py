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

The N workers are started once and each reads one file after another (starting a
process per file costs more than reading a small PST). When there are processors to
spare, each record is also prepared in the worker that read it (the ``finish``
callable: the per-message rules and the documents); the caller is left with the rules
that span messages and the writing.

A worker reads a PST/OST itself, with libpff in its own process: the worker is the
crash isolation the PST reader needs, so no second child (and no second pickling of
every record) stands between libpff and the caller. The caller watches such a worker
as it watches the PST reader's child with one worker: if it dies, the events it
spooled are kept and one :class:`~inbec_export.model.ItemFailure` for the file says
so in the same words ("PST reader crashed ..."); if it spools nothing for the PST
reader's stall time (``INBEC_PST_STALL_SECONDS``), it is stopped and reported as
stalled. A new worker takes the next file; files the lost worker had not begun go to
another. A worker that dies reading another format gets a failure that says so.

Limitations: the events must be picklable (they are: plain dataclasses); a worker ahead
of the caller spools what it reads to the temporary folder, which needs room for the
records (not the attachments) of the files read ahead (up to ``FILES_IN_HAND`` per
worker); the space of what the caller has handed on is given back as it goes (every
:data:`RELEASE_BYTES`, where the file system can punch holes).
"""

from __future__ import annotations

import ctypes
import faulthandler
import logging
import os
import pickle
import shutil
import struct
import tempfile
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import IO, Any

from inbec_export.model import ItemFailure, MessageRecord
from inbec_export.readers.isolation import (
    JOIN_TIMEOUT_SECONDS,
    STARTUP_GRACE_SECONDS,
    WorkerFailure,
    _context,
    _failure,
    quiet_child,
    reap,
    send_request,
    signals_held,
)

logger = logging.getLogger(__name__)

#: Shortest and longest pause, in seconds, while the caller waits for a worker to spool
#: the next event (the pause doubles while nothing comes, and is short again after).
MIN_WAIT_SECONDS = 0.0005
MAX_WAIT_SECONDS = 0.05

#: Files given to each worker ahead of the one being handed on: enough that a worker
#: finished with a short file goes on with the next instead of waiting.
FILES_IN_HAND = 3

#: Workers a file is given to at most, when each ends before beginning it.
MAX_GIVINGS = 3

#: Bytes read from a spool file at once.
SPOOL_READ_BYTES = 1024 * 1024

#: Bytes handed on from a spool file after which the disk space they take is given back
#: (a hole is punched over them: the file keeps its size, and they are never read again),
#: so that a large file read by a worker ahead of the caller takes the room of what the
#: caller has not yet handed on, not that of the whole file.
RELEASE_BYTES = 64 * 1024 * 1024

# fallocate(2) mode: free the range's blocks and keep the file's size.
_FALLOC_FL_KEEP_SIZE = 0x01
_FALLOC_FL_PUNCH_HOLE = 0x02

# Each frame of a spool file: its pickle's length (8 bytes, big-endian), then the pickle
# of ``(kind, payload)``.
_LENGTH = struct.Struct(">Q")
_EVENT = 0
_DONE = 1
_PULSE = 2  # still at work (hashing a large file): no event, but progress

#: Least time between two pulses a worker writes while it hashes a file, in seconds.
PULSE_SECONDS = 1.0


class _Reader:
    """A worker process that reads the files it is sent, one after another, each into
    its own spool file (PST/OST files with libpff in this same process)."""

    def __init__(self, finish: Callable[[MessageRecord], object]) -> None:
        context = _context()
        requests_in, self._requests = context.Pipe(duplex=False)
        # Not a daemon: a daemon may start no process, and a reader may want one; the
        # pool reaps its workers itself.
        self.process = context.Process(
            target=_serve_files, args=(requests_in, self._requests, finish)
        )
        with signals_held():
            self.process.start()
        requests_in.close()
        #: How the worker ended, once it is reaped (its process object is then closed).
        self.ended: int | None = None
        self.reaped = False

    def alive(self) -> bool:
        """True while the worker runs."""
        return not self.reaped and self.process.is_alive()

    def exitcode(self) -> int | None:
        """The worker's exit status (negative: the signal that ended it), or None."""
        return self.ended if self.reaped else self.process.exitcode

    def _reap(self) -> None:
        if not self.reaped:
            self.ended = reap(self.process)
            self.reaped = True

    def send(self, path: Path, spool: Path) -> bool:
        """Ask the worker to read ``path`` into ``spool``; False when it cannot be asked."""
        return self.alive() and send_request(self._requests, (str(path), str(spool)))

    def stop(self) -> None:
        """Let an idle worker end; stop it if it does not, and reap it."""
        send_request(self._requests, None)
        self._requests.close()
        if not self.reaped:
            self.process.join(JOIN_TIMEOUT_SECONDS)
        self._reap()

    def kill(self) -> None:
        """Stop a worker that is busy or broken, and reap it."""
        self._requests.close()
        self._reap()


@dataclass
class _Job:
    """One file given to a worker to read into its spool file."""

    path: Path
    spool: Path
    reader: _Reader


class _Pool:
    """The worker processes of one run and the files each has been given."""

    def __init__(self, workers: int, finish: Callable[[MessageRecord], object]) -> None:
        self.workers = workers
        self.finish = finish
        self.jobs: dict[_Reader, int] = {}

    def give(self, path: Path, spool: Path) -> _Job:
        """Give ``path`` to the worker with the fewest files in hand (a new one while
        there are fewer than ``workers``)."""
        while True:
            live = [reader for reader in self.jobs if reader.alive()]
            if len(live) < self.workers:
                reader = _Reader(self.finish)
                self.jobs[reader] = 0
            else:
                reader = min(live, key=lambda r: self.jobs[r])
            if reader.send(path, spool) or not reader.alive():
                # A worker that died before taking the request is seen by the caller,
                # which gives the file to another (a bounded number of times).
                self.jobs[reader] += 1
                return _Job(path, spool, reader)
            self.drop(reader)

    def done(self, job: _Job) -> None:
        """``job`` has been handed on in full: its worker has one file less in hand."""
        if job.reader in self.jobs:
            self.jobs[job.reader] -= 1

    def drop(self, reader: _Reader) -> None:
        """Stop a worker that died or is left mid-file; its files not begun go to others."""
        reader.kill()
        self.jobs.pop(reader, None)

    def close(self) -> None:
        """Stop every worker: idle ones are asked to end, busy ones are stopped."""
        for reader, count in self.jobs.items():
            if count:
                reader.kill()
            else:
                reader.stop()
        self.jobs.clear()


def iter_parallel(
    inputs: Iterable[Path],
    workers: int,
    finish: Callable[[MessageRecord], object],
    own_case: Path | None = None,
) -> Iterator[Any]:
    """Yield the events of every evidence file under ``inputs``, reading ``workers``
    files at a time in worker processes; the order is that of ``iter_evidence``.

    Args:
        inputs: files and folders, walked as :func:`~inbec_export.readers.walk_inputs`
            walks them.
        workers: how many files are read at the same time (2 or more).
        finish: applied to each record in the worker that read it (picklable).
        own_case: the run's case folder (see :func:`~inbec_export.readers.walk_inputs`).

    Returns:
        An iterator of the events of :func:`~inbec_export.readers.iter_evidence`.
    """
    from inbec_export.readers import FileSkipped, walk_inputs

    folder = Path(tempfile.mkdtemp(prefix="inbec-spool-"))
    pending: deque[_Job | ItemFailure | FileSkipped] = deque()
    pool = _Pool(workers, finish)
    paths = walk_inputs(inputs, own_case)
    first: dict[bytes, str] = {}
    started = 0
    try:
        exhausted = False
        while True:
            while not exhausted and _running(pending) < workers * FILES_IN_HAND:
                entry = next(paths, None)
                if entry is None:
                    exhausted = True
                elif isinstance(entry, ItemFailure | FileSkipped):
                    pending.append(entry)
                else:
                    pending.append(pool.give(entry, folder / f"{started}.spool"))
                    started += 1
            if not pending:
                return
            head = pending.popleft()
            if not isinstance(head, _Job):
                yield head
                continue
            finished = False
            try:
                finished = yield from _once(_drain(head, pool), first)
            finally:
                if finished:
                    pool.done(head)
                else:
                    pool.drop(head.reader)
    finally:
        pool.close()
        shutil.rmtree(folder, ignore_errors=True)


def _once(
    events: Generator[Any, None, bool], first: dict[bytes, str]
) -> Generator[Any, None, bool]:
    """The events of one file as :func:`_drain` yields them; when its content was read
    before in the run (:func:`~inbec_export.readers.repeated`), only the
    :class:`~inbec_export.readers.FileSkipped` that says so, the rest drained unseen
    (its worker had read it already, as one worker would not have)."""
    from inbec_export.readers import FileOpened, repeated

    skipped = False
    try:
        while True:
            try:
                event = next(events)
            except StopIteration as stop:
                return bool(stop.value)
            if isinstance(event, FileOpened) and (again := repeated(event.evidence, first)):
                skipped = True
                yield again
            elif not skipped:
                yield event
    finally:
        events.close()


def _running(pending: deque[Any]) -> int:
    return sum(1 for job in pending if isinstance(job, _Job))


def _serve_files(
    requests: Connection, parent_end: Connection, finish: Callable[[MessageRecord], object]
) -> None:
    """Body of a worker: read each file it is sent into its spool file, until told to stop."""
    # A forked worker holds a copy of the parent's end of its requests pipe: not needed.
    parent_end.close()
    quiet_child()
    # A crash in a native library is reported by the caller, in one line.
    faulthandler.disable()
    try:
        while True:
            try:
                job = requests.recv()
            except (EOFError, OSError):
                return
            if job is None:
                return
            _spool_file(job[0], job[1], finish)
    except KeyboardInterrupt:
        pass  # the user interrupted: the parent stops the run
    finally:
        requests.close()


def _spool_file(path: str, spool: str, finish: Callable[[MessageRecord], object]) -> None:
    """Read one file and write its events, then DONE, to ``spool``. A PST/OST is read
    in this process (it is the crash isolation the PST reader needs)."""
    from inbec_export.readers import _read_file

    with open(spool, "wb") as handle:
        last = time.monotonic()

        def pulse() -> None:
            nonlocal last
            if time.monotonic() - last >= PULSE_SECONDS:
                _write(handle, (_PULSE, None))
                last = time.monotonic()

        for event in _read_file(Path(path), finish, in_worker=True, progress=pulse):
            _write(handle, (_EVENT, event))
        _write(handle, (_DONE, None))


def _write(handle: IO[bytes], frame: tuple[int, Any]) -> None:
    body = pickle.dumps(frame, protocol=pickle.HIGHEST_PROTOCOL)
    handle.write(_LENGTH.pack(len(body)) + body)
    # Each frame reaches the file at once, so the caller can hand it on while we read on.
    handle.flush()


class _Progress:
    """What the caller knows of the file a worker is reading: which reader reads it
    (from its :class:`~inbec_export.readers.FileOpened`), how many of its events came,
    and when the worker last showed progress."""

    def __init__(self) -> None:
        self.worker_name: str | None = None
        self.format_name: str | None = None
        #: Every worker is watched with the PST reader's stall time: a worker that
        #: stops (native loop, stopped process) must not hold the run forever.
        self.stall_seconds: float = _stall_seconds()
        self.items = 0
        self.opened = False
        self.last = time.monotonic()

    def pulse(self) -> None:
        self.last = time.monotonic()

    def saw(self, event: object) -> None:
        from inbec_export.readers import FileOpened
        from inbec_export.readers.base import reader_for

        self.last = time.monotonic()
        if not self.opened and isinstance(event, FileOpened):
            self.opened = True
            self.format_name = event.evidence.format
            self.worker_name = reader_for(event.evidence.format).worker_name
        elif self.opened:
            self.items += 1

    def stalled(self) -> bool:
        """True when the worker has shown no progress for longer than it may."""
        allowed = self.stall_seconds + (STARTUP_GRACE_SECONDS if self.items == 0 else 0.0)
        return time.monotonic() - self.last > allowed

    def name(self) -> str:
        """Who read the file, for the failure line."""
        if self.worker_name is not None:
            return self.worker_name
        return f"{self.format_name} reader" if self.format_name else "reader worker"

    def failure(self, path: Path, exitcode: int | None) -> ItemFailure:
        """The failure of a file whose worker ended before its end."""
        if self.worker_name is not None:
            # Said as the reader's own child would say it: the same whatever --workers.
            failure = _failure(exitcode, self.items, False, None) or WorkerFailure(self.items)
            return ItemFailure(str(path), None, failure.describe(self.worker_name))
        return ItemFailure(
            str(path),
            None,
            f"reader worker ended (status {exitcode}) before the end of the file; "
            "the rest of the file was not read",
        )


def _stall_seconds() -> float:
    from inbec_export.readers.pst import stall_seconds_from_env

    return stall_seconds_from_env()


def _drain(job: _Job, pool: _Pool) -> Generator[Any, None, bool]:
    """Yield the events of ``job`` as its worker spools them; return True when the file
    was handed on to its end (False: its worker died or hung, and a failure says so)."""
    buffer = bytearray()
    wait = MIN_WAIT_SECONDS
    done = False
    # The worker creates the spool file when it begins the file; until then there is
    # nothing to read. A worker that died before beginning it leaves it to another.
    given = 1
    # The worker has handed on every file it had before this one, so it begins this one
    # at once; one that does not within the stall time is stopped as hung.
    waiting = _Progress()
    while not job.spool.exists():
        if job.reader.alive() and waiting.stalled():
            logger.warning("%s: reader worker does not begin the file; stopped", job.path)
            job.reader.kill()
            waiting = _Progress()
        if not job.reader.alive() and not job.spool.exists():
            exitcode = job.reader.exitcode()
            pool.drop(job.reader)
            if given == MAX_GIVINGS:
                logger.warning("%s: reader workers ended before beginning it", job.path)
                yield ItemFailure(
                    str(job.path),
                    None,
                    f"not read: {given} reader workers ended (the last with status "
                    f"{exitcode}) before beginning the file",
                )
                return False
            job.reader = pool.give(job.path, job.spool).reader
            given += 1
        time.sleep(wait)
        wait = min(2 * wait, MAX_WAIT_SECONDS)
    progress = _Progress()
    handle = job.spool.open("r+b")  # writable, so that handed-on space can be released
    released: int | None = 0
    try:
        while not done:
            chunk = handle.read(SPOOL_READ_BYTES)
            if chunk:
                buffer += chunk
                wait = MIN_WAIT_SECONDS
            frames, used = _frames(buffer)
            del buffer[:used]
            if released is not None:
                released = _release(handle, handle.tell() - len(buffer), released)
            for kind, payload in frames:
                if kind == _DONE:
                    done = True
                    break
                if kind == _PULSE:
                    progress.pulse()
                    continue
                progress.saw(payload)
                yield payload
            if done or chunk:
                continue
            if not job.reader.alive():
                # One more read: the worker may have written its last frames and died.
                if not _more(handle, buffer):
                    break
                continue
            if progress.stalled():
                break
            time.sleep(wait)
            wait = min(2 * wait, MAX_WAIT_SECONDS)
    finally:
        handle.close()
        job.spool.unlink(missing_ok=True)
    if done:
        return True
    if job.reader.alive() and progress.stalled():
        seconds = progress.stall_seconds
        logger.warning("%s: reader worker stalled for %s s; stopped", job.path, seconds)
        pool.drop(job.reader)
        failure = WorkerFailure(progress.items, stalled_seconds=seconds)
        yield ItemFailure(str(job.path), None, failure.describe(progress.name()))
        return False
    if job.reader.alive():  # the worker is gone or going: wait for its status
        job.reader.process.join(JOIN_TIMEOUT_SECONDS)
    exitcode = job.reader.exitcode()
    logger.warning("%s: reader worker ended with status %s", job.path, exitcode)
    yield progress.failure(job.path, exitcode)
    return False


def _release(handle: IO[bytes], handed_on: int, released: int) -> int | None:
    """Give back the disk space of the first ``handed_on`` bytes of ``handle`` once
    :data:`RELEASE_BYTES` more than ``released`` have been handed on; return how many
    bytes are released now, or None where the file system cannot (then the spool file
    keeps its space until it is removed, as before)."""
    upto = handed_on - handed_on % 4096
    if upto - released < RELEASE_BYTES:
        return released
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fallocate = libc.fallocate
    except (OSError, AttributeError):
        return None
    fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong]
    mode = _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE
    if fallocate(handle.fileno(), mode, 0, upto) != 0:
        logger.debug("spool space not released: %s", os.strerror(ctypes.get_errno()))
        return None
    return upto


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


def default_workers() -> int:
    """The number of processors this process may use (at least 1)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)
