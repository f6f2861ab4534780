"""Run a generator function in a child process and stream its items back to the caller.

Native parsers (libpff above all) can crash the interpreter on a hostile or damaged file.
:func:`iter_in_worker` runs the parsing generator in a child process, so that a crash
costs the file being read and not the run: the caller gets every item the child handed
over, then one :class:`WorkerFailure` saying how the child ended.

Transport: each item is pickled in the child and written to a pipe, after its length, as
soon as it is produced (``batch_size=1``, the default), so a crash loses nothing already
produced; the parent reads the pipe in large chunks, so many items cross per read. A
larger ``batch_size`` saves a few tens of microseconds per item at the price of losing
the unsent part of a batch when the child crashes.

Watchdog: a child can also hang instead of crashing (libpff looping on a damaged file, or
a process stopped with SIGSTOP). When the parent has waited ``stall_seconds`` (default
:data:`STALL_SECONDS`) for the next item or batch, it kills the child with SIGKILL, reaps
it and ends with a :class:`WorkerFailure` whose ``stalled_seconds`` is set; the items
received before are kept. The clock runs only while the parent waits for the child, so
a slow consumer of the items never counts against the child.

Sharing the work: inside :func:`worker_session`, the child can also be given spare work
(``spare``): whenever the parent is behind, by half a pipe, the child applies it to the
item it is about to write, so a child that would wait for the parent does part of the
parent's work instead.

Reuse: inside :func:`worker_session` (the evidence walk opens one), the child is kept
between calls, and the next generator runs in the same process: starting a child per file
costs a fork and a cold heap, which on a folder of many small PSTs is more than reading
them. A child that crashed, stalled or was left mid-stream is not reused; the next call
starts a fresh one, so one bad file still costs only itself. Outside a session each call
has a child of its own.

Limitations: items and arguments must be picklable; the child is started with ``fork``
on Linux when the caller runs a single thread (fast, nothing re-imported) and with
``spawn`` otherwise, where the generator function must be importable by module name.
The first item gets :data:`STARTUP_GRACE_SECONDS` more, for starting the child.
Progress is measured in items: a child that needs longer than ``stall_seconds`` for one
item, or to reach its first one (opening the file counts), is killed as hung even though
it would have finished. The pipe is read with
``poll()``, so the module runs on POSIX systems only.
"""

from __future__ import annotations

import ctypes
import faulthandler
import fcntl
import logging
import math
import multiprocessing
import os
import pickle
import select
import signal
import struct
import sys
import termios
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.context import DefaultContext, ForkContext, SpawnContext
from pathlib import Path
from typing import Any, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Largest parent-side read from the pipe, in bytes: many small items arrive per read.
READ_BUFFER_BYTES = 1024 * 1024

#: Capacity asked for the pipe that carries items up from the child, in bytes (Linux
#: gives 64 KiB by default, a few records; more lets the child read on while the parent
#: analyses a slow message, instead of each waiting for the other). Linux caps it at
#: ``/proc/sys/fs/pipe-max-size`` (1 MiB by default); where it cannot be set, the
#: default stays.
PIPE_BYTES = 1024 * 1024

#: How full the pipe must be, as a share of its capacity, for the child to do its spare
#: work on the next item (see :func:`worker_session`). Read when a child starts.
SPARE_FILL = 0.5

#: Seconds the parent waits for a child to exit before it is killed.
JOIN_TIMEOUT_SECONDS = 5.0

#: Seconds without a new item from the child after which it is taken as hung and killed.
#: A sound file gives its next item within seconds (the slowest step, hashing an
#: attachment of up to 1 GiB, is bound by disk speed); five minutes of silence means a
#: native loop or a stopped process, and waiting longer only holds the run back.
STALL_SECONDS = 300.0

#: Extra seconds allowed before the first item: starting the child process (importing the
#: reader in a fresh interpreter) takes seconds on a loaded machine, and is no stall.
STARTUP_GRACE_SECONDS = 20.0

# Each frame is its pickle's length (unsigned, 8 bytes, big-endian), then the pickle.
_LENGTH = struct.Struct(">Q")

# Frame kinds written by the child: one item, a batch of items, a Python error, the end.
_ITEM = 0
_BATCH = 1
_ERROR = 2
_DONE = 3


@dataclass(frozen=True, slots=True)
class WorkerFailure:
    """How a worker ended when it did not finish its generator.

    ``items`` counts the items received before the failure. ``signal_number`` is set when
    the child was killed by a signal (a segmentation fault is 11), ``exitcode`` when it
    exited with a non-zero status, ``error`` (``"TypeName: message"``) when the generator
    raised a Python exception, ``stalled_seconds`` when the parent killed a child that
    sent nothing for that long.
    """

    items: int
    exitcode: int | None = None
    signal_number: int | None = None
    error: str | None = None
    stalled_seconds: float | None = None

    def describe(self, what: str) -> str:
        """One sentence for a failure record, e.g. ``describe("PST reader")``.

        Args:
            what: the name of the work the child did, as the user knows it.

        Returns:
            For example "PST reader crashed (signal 11, SIGSEGV) after 3 items; the rest
            of the file was not read".
        """
        if self.stalled_seconds is not None:
            cause = f"stalled: no progress for {self.stalled_seconds:g} s"
        elif self.error is not None:
            cause = f"failed with {self.error}"
        elif self.signal_number is not None:
            cause = f"crashed (signal {self.signal_number}{_signal_name(self.signal_number)})"
        elif self.exitcode is not None:
            cause = f"exited with status {self.exitcode}"
        else:
            cause = "stopped without finishing"
        return f"{what} {cause} after {self.items} items; the rest of the file was not read"


def _signal_name(number: int) -> str:
    try:
        return f", {signal.Signals(number).name}"
    except ValueError:
        return ""


def iter_in_worker(
    func: Callable[..., Iterable[T]],
    *args: Any,
    batch_size: int = 1,
    stall_seconds: float | None = STALL_SECONDS,
) -> Generator[T | WorkerFailure, None, None]:
    """Yield the items of ``func(*args)``, computed in a child process.

    The child's items are streamed as they come; if the child crashes, exits early,
    raises or stalls, a single :class:`WorkerFailure` follows the items already received.
    Closing the returned generator (or an exception in the caller, KeyboardInterrupt
    included) stops and reaps the child.

    Args:
        func: a module-level generator function (it must be picklable under ``spawn``).
        *args: picklable arguments for ``func``.
        batch_size: items pickled together per write; 1 loses nothing on a crash.
        stall_seconds: longest wait for the child's next item or batch before the child
            is killed as hung; None waits forever.

    Returns:
        A generator of the child's items, possibly ending with one ``WorkerFailure``.

    Raises:
        ValueError: when ``stall_seconds`` is not a positive number.
    """
    if stall_seconds is not None and not stall_seconds > 0:
        raise ValueError(f"stall_seconds must be positive, not {stall_seconds!r}")
    request: _Request = (func, args, max(1, batch_size))
    session = _current_session()
    worker = session.take(request) if session is not None else None
    if worker is None:
        worker = _Worker(session.spare if session is not None else None)
        worker.submit(*request)
        if session is not None:
            session.busy = worker
    received = 0
    clean = False
    error: str | None = None
    try:
        while True:
            wait = stall_seconds
            if wait is not None and received == 0:
                wait += STARTUP_GRACE_SECONDS
            try:
                frame = worker.frames.next(wait)
            except _Stalled:
                _kill(worker.process, received, stall_seconds)
                yield WorkerFailure(received, stalled_seconds=stall_seconds)
                return
            if frame is None:  # the child is gone
                worker.frames.close()
                worker.process.join(JOIN_TIMEOUT_SECONDS)
                failure = _failure(worker.process.exitcode, received, False, None)
                yield failure or WorkerFailure(received)
                return
            kind, payload = frame
            if kind == _ITEM:
                received += 1
                yield payload
            elif kind == _BATCH:
                for item in payload:
                    received += 1
                    yield item
            else:
                # DONE or ERROR: the child finished this generator and waits for the next.
                error = None if kind == _DONE else str(payload)
                clean = True
                break
        if session is not None:
            session.give_back(worker)
        else:
            worker.close()
        if error is not None:
            yield WorkerFailure(received, error=error)
    finally:
        if not clean:
            worker.discard()
            if session is not None:
                session.forget(worker)


#: What a child is asked to run: the generator function, its arguments, the batch size.
_Request = tuple[Callable[..., Iterable[Any]], tuple[Any, ...], int]


class _Worker:
    """A child process that runs the generators it is sent, one after another.

    Requests (``(func, args, batch_size)``) go down one pipe; frames come back up
    another, each generator's ending with DONE or ERROR. ``spare``: see
    :func:`worker_session`.
    """

    def __init__(self, spare: Callable[[Any], Any] | None = None) -> None:
        context = _context()
        requests_in, self._requests = context.Pipe(duplex=False)
        reader, writer = context.Pipe(duplex=False)
        ends = (self._requests, reader)
        self.process = context.Process(
            target=_serve, args=(requests_in, writer, ends, spare, SPARE_FILL), daemon=True
        )
        with signals_held():
            self.process.start()
        # The parent must drop its copies of the child's ends, or a dead child never
        # gives EOF.
        writer.close()
        requests_in.close()
        widen_pipe(reader.fileno(), PIPE_BYTES)
        self.frames = _FrameReader(os.dup(reader.fileno()))
        #: Requests sent ahead of the one being read (:func:`read_ahead`), in order: their
        #: frames come, in that order, after those of the current request.
        self.ahead: list[_Request] = []
        reader.close()

    def submit(self, func: Callable[..., Iterable[Any]], args: tuple[Any, ...], batch: int) -> bool:
        """Ask the child to run ``func(*args)``; False when it can no longer be asked."""
        return self.process.is_alive() and send_request(self._requests, (func, args, batch))

    def close(self) -> None:
        """Let an idle child end (no more requests) and reap it."""
        self._requests.close()
        self.frames.close()
        self.process.join(JOIN_TIMEOUT_SECONDS)
        reap(self.process)

    def discard(self) -> None:
        """Stop a child that cannot be reused (mid-stream, crashed or hung) and reap it."""
        self._requests.close()
        self.frames.close()
        reap(self.process)


class WorkerSession:
    """Keeps one child between calls of :func:`iter_in_worker` (see
    :func:`worker_session`), and knows which one is being read from, so that it can be
    asked ahead (:func:`read_ahead`)."""

    def __init__(self, spare: Callable[[Any], Any] | None = None) -> None:
        self.pid = os.getpid()
        #: What the child does to an item while this process is behind (see
        #: :func:`worker_session`).
        self.spare = spare
        self._idle: _Worker | None = None
        #: The child an :func:`iter_in_worker` call is reading from, if any.
        self.busy: _Worker | None = None
        self._open = True

    def take(self, request: _Request) -> _Worker | None:
        """The kept child, now running ``request`` and owned by the caller; None when a
        new one must be started (none is kept, or it was asked ahead for another)."""
        worker, self._idle = self._idle, None
        if worker is None:
            return None
        if worker.ahead:
            if _same_request(worker.ahead[0], request):
                worker.ahead.pop(0)
                self.busy = worker
                return worker
            # Asked ahead for other files: their frames would come first. Not usable.
            worker.discard()
            return None
        if worker.submit(*request):
            self.busy = worker
            return worker
        worker.discard()
        return None

    def read_ahead(self, request: _Request) -> bool:
        """Send ``request`` to the child now, behind what it is asked already (nothing
        when it was asked already); the :func:`iter_in_worker` call for it later reads
        what the child has sent by then. False when it cannot be sent (then that call
        asks for it itself)."""
        if not self._open:
            return False
        if self.asked(request):
            return True
        worker = self.busy or self._idle
        if worker is None:
            worker = self._idle = _Worker(self.spare)
        if len(worker.ahead) >= MAX_AHEAD or not worker.submit(*request):
            return False
        worker.ahead.append(request)
        return True

    def asked(self, request: _Request) -> bool:
        """True when the kept child was sent ``request`` ahead and nobody read it yet."""
        worker = self.busy or self._idle
        return worker is not None and any(_same_request(a, request) for a in worker.ahead)

    def give_back(self, worker: _Worker) -> None:
        """Keep ``worker``, which finished its generator cleanly, for the next call."""
        self.forget(worker)
        if self._open and self._idle is None:
            self._idle = worker
        elif worker.ahead:
            worker.discard()  # busy with requests nobody will read
        else:
            worker.close()

    def forget(self, worker: _Worker) -> None:
        """``worker`` is no longer read from (given back, or stopped)."""
        if self.busy is worker:
            self.busy = None
        if self._idle is worker:
            self._idle = None

    def close(self) -> None:
        """End and reap the kept child (at once if it was reading ahead)."""
        self._open = False
        worker, self._idle = self._idle, None
        if worker is not None:
            if worker.ahead:
                worker.discard()
            else:
                worker.close()


#: Requests a session's child may be sent ahead of the one being read. What it reads
#: ahead waits in the pipe, so this bounds the requests, not the memory: with many small
#: files, two ahead kept the child waiting at almost every file's end (about a pipe's
#: worth of items, a few files, is read before the caller catches up).
MAX_AHEAD = 64


def _same_request(one: _Request, other: _Request) -> bool:
    return one[0] is other[0] and one[2] == other[2] and one[1] == other[1]


def read_ahead(func: Callable[..., Iterable[Any]], *args: Any, batch_size: int = 1) -> bool:
    """Within :func:`worker_session`, have the child start on ``func(*args)`` as soon as
    it is done with what it was asked before, so that it need not wait for the caller to
    get to it; the later ``iter_in_worker(func, *args, batch_size=...)`` call takes its
    items. Outside a session, or when the child may not be asked, nothing is sent and
    False is returned. What the child reads ahead waits in the pipe (at most
    :data:`PIPE_BYTES`), so memory stays bounded.
    """
    session = _current_session()
    return session is not None and session.read_ahead((func, args, max(1, batch_size)))


def asked_ahead(func: Callable[..., Iterable[Any]], *args: Any, batch_size: int = 1) -> bool:
    """True when, within :func:`worker_session`, the child was asked ahead for
    ``func(*args)`` (:func:`read_ahead`) and no call read it yet; False when that child
    is gone (it crashed or stalled on an earlier request) or it was never asked."""
    session = _current_session()
    return session is not None and session.asked((func, args, max(1, batch_size)))


_SESSIONS: list[WorkerSession] = []


@contextmanager
def worker_session(spare: Callable[[Any], Any] | None = None) -> Iterator[WorkerSession]:
    """Within this block, calls of :func:`iter_in_worker` in this process reuse one child.

    Args:
        spare: work the child may take over from this process, item by item. When the
            pipe is at least half full (:data:`SPARE_FILL`; this process is behind: it
            has that much still to take), the child applies ``spare`` to the next item
            of a ``batch_size=1`` request before writing it, instead of reading on; the
            caller gets the item or what ``spare`` made of it. So the two processes
            share the work by themselves, whichever is the slower on the machine: a
            child that waits for this process gets more to do, one that this process
            waits for gets none.
            ``spare`` must be picklable (under ``spawn``), must not raise, and its
            result must be what this process would make of the item itself.
    """
    session = WorkerSession(spare)
    _SESSIONS.append(session)
    try:
        yield session
    finally:
        _SESSIONS.remove(session)
        session.close()


def _current_session() -> WorkerSession | None:
    # A forked child inherits the list; only its own sessions count.
    if _SESSIONS and _SESSIONS[-1].pid == os.getpid():
        return _SESSIONS[-1]
    return None


class _Stalled(Exception):
    """The child sent no complete frame within the stall timeout."""


class _FrameReader:
    """Reads the child's frames from the pipe, waiting at most a given time for each."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd
        self._buffer = bytearray()
        self._poll = select.poll()
        self._poll.register(fd, select.POLLIN)

    def next(self, timeout: float | None) -> tuple[int, Any] | None:
        """The next ``(kind, payload)`` frame, or None at the end of the pipe.

        Raises:
            _Stalled: when no whole frame arrived within ``timeout`` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._fill(_LENGTH.size, deadline):
            return None
        end = _LENGTH.size + _LENGTH.unpack_from(self._buffer)[0]
        if not self._fill(end, deadline):
            return None
        try:
            with memoryview(self._buffer) as view:
                frame: tuple[int, Any] = pickle.loads(view[_LENGTH.size : end])
        except (EOFError, pickle.UnpicklingError, ValueError):
            return None
        del self._buffer[:end]
        return frame

    def _fill(self, size: int, deadline: float | None) -> bool:
        """Read until ``size`` bytes are buffered; False if the pipe ends first."""
        while len(self._buffer) < size:
            if self._fd is None:
                return False
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._poll.poll(math.ceil(remaining * 1000)):
                    raise _Stalled
            try:
                chunk = os.read(self._fd, READ_BUFFER_BYTES)
            except OSError:
                return False
            if not chunk:
                return False
            self._buffer += chunk
        return True

    def close(self) -> None:
        """Close the read end of the pipe (a child still writing then gets EPIPE)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


def widen_pipe(fd: int, size: int) -> int | None:
    """Ask Linux for a pipe of ``size`` bytes (at most what the system allows); return
    the capacity it now has, or None where the call does not exist or is refused."""
    command = getattr(fcntl, "F_SETPIPE_SZ", None)
    if command is None:
        return None
    try:
        limit = int(Path("/proc/sys/fs/pipe-max-size").read_text("ascii"))
    except (OSError, ValueError):
        limit = size
    try:
        return int(fcntl.fcntl(fd, command, min(size, limit)))
    except OSError:
        return None


def _context() -> ForkContext | SpawnContext | DefaultContext:
    if sys.platform.startswith("linux") and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def _failure(
    exitcode: int | None, received: int, finished: bool, error: str | None
) -> WorkerFailure | None:
    if error is not None:
        return WorkerFailure(received, exitcode=exitcode, error=error)
    if exitcode is not None and exitcode < 0:
        return WorkerFailure(received, signal_number=-exitcode)
    if exitcode not in (0, None):
        return WorkerFailure(received, exitcode=exitcode)
    if not finished:
        return WorkerFailure(received, exitcode=exitcode)
    return None


def _kill(
    process: multiprocessing.process.BaseProcess, received: int, seconds: float | None
) -> None:
    """Kill a hung child at once: SIGKILL reaches a stopped or looping native process too."""
    logger.info(
        "worker %s sent nothing for %s s after %d items; killing it", process.pid, seconds, received
    )
    process.kill()
    process.join(JOIN_TIMEOUT_SECONDS)


def reap(process: multiprocessing.process.BaseProcess) -> int | None:
    """Stop the child if it still runs (the caller stopped early), wait for it, and
    return its exit status (negative: the signal that ended it)."""
    if process.is_alive():
        process.terminate()
        if process.pid is not None:
            # A stopped process acts on SIGTERM only once it runs again.
            with suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGCONT)
        process.join(JOIN_TIMEOUT_SECONDS)
    if process.is_alive():
        logger.warning("worker %s ignored SIGTERM; killing it", process.pid)
        process.kill()
        process.join(JOIN_TIMEOUT_SECONDS)
    exitcode = process.exitcode
    try:
        process.close()
    except ValueError:
        logger.warning("worker %s could not be reaped", process.pid)
    return exitcode


def send_request(requests: Connection, request: object) -> bool:
    """Send ``request`` down a child's requests pipe; False when the child is gone."""
    try:
        requests.send(request)
    except (BrokenPipeError, ConnectionError, OSError):
        return False
    return True


def _serve(
    requests: Connection,
    writer: Connection,
    parent_ends: tuple[Connection, Connection],
    spare: Callable[[Any], Any] | None = None,
    spare_fill: float = SPARE_FILL,
) -> None:
    """Body of the child: run each requested generator, until the requests pipe ends."""
    # A forked child holds copies of the parent's ends too: closed here, so that the
    # requests pipe ends when the parent closes its end, and a write to a parent that
    # is gone fails instead of blocking.
    for end in parent_ends:
        end.close()
    quiet_child()
    # The parent reports the crash; a traceback dump on the user's terminal adds nothing.
    faulthandler.disable()
    fd = writer.fileno()
    try:
        while True:
            try:
                func, args, batch = requests.recv()
            except (EOFError, OSError):
                return  # the parent has no more work, or is gone
            if not _run(fd, func, args, batch, spare, spare_fill):
                return
    except KeyboardInterrupt:
        pass  # the user interrupted: the parent reports it
    finally:
        writer.close()
        requests.close()


def _run(
    fd: int,
    func: Callable[..., Iterable[Any]],
    args: tuple[Any, ...],
    batch: int,
    spare: Callable[[Any], Any] | None = None,
    spare_fill: float = SPARE_FILL,
) -> bool:
    """Write the frames of ``func(*args)``, ending with DONE or ERROR; False when the
    parent stopped listening. An item that finds the pipe ``spare_fill`` full (a share
    of its capacity) gets ``spare``."""
    pending: list[Any] = []
    behind = _parent_behind(fd, spare_fill)
    try:
        for item in func(*args):
            if batch == 1:
                if spare is not None and behind():
                    item = spare(item)
                _write(fd, (_ITEM, item))
                continue
            pending.append(item)
            if len(pending) >= batch:
                _write(fd, (_BATCH, pending))
                pending = []
        if pending:
            _write(fd, (_BATCH, pending))
        _write(fd, (_DONE, None))
    except BrokenPipeError:
        return False
    except Exception as exc:
        try:
            if pending:
                _write(fd, (_BATCH, pending))
            _write(fd, (_ERROR, f"{type(exc).__name__}: {exc}"))
        except (BrokenPipeError, pickle.PicklingError, TypeError, AttributeError):
            return False
    return True


#: Signals a new child holds until :func:`quiet_child` has set what they do there.
_HELD_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})


@contextmanager
def signals_held() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM while a child process is started, which inherits the
    mask: until the child's :func:`quiet_child` has run, either signal waits instead of
    running the handler the child inherited from this process (a traceback on the
    user's terminal). This process gets whatever came meanwhile when the block ends."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def quiet_child() -> None:
    """Set up a worker process so that stopping the run stops it cleanly.

    The parent decides when a child ends: Ctrl-C (SIGINT to the whole process group) is
    ignored here and SIGTERM ends the process at once, whatever handler the parent had
    installed before the fork (no traceback from a child on the user's terminal, and
    the same failure reason whether or not stderr is a terminal). On Linux the child is
    also killed when its parent dies, so that a child busy in native code is never left
    running after the run, whichever way its parent ended.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # Started with both held (``signals_held``): one that came meanwhile acts now.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _HELD_SIGNALS)
    if sys.platform.startswith("linux"):
        parent = os.getppid()
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # no prctl: the parent's clean-up still applies
            return
        if os.getppid() != parent:  # the parent died before the request took effect
            os._exit(1)


# prctl option: the signal a process gets when its parent dies (linux/prctl.h).
_PR_SET_PDEATHSIG = 1


def _parent_behind(fd: int, fill: float) -> Callable[[], bool]:
    """A test of whether the pipe ``fd`` is at least ``fill`` full (a share of its
    capacity): the parent has that much still to take. (It takes up to
    :data:`READ_BUFFER_BYTES` at a time, so a pipe full to the brim is seldom seen even
    when the parent is the slower.)"""
    try:
        capacity = int(fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ))
    except (AttributeError, OSError):  # not Linux, or not a pipe: Linux's default size
        capacity = 64 * 1024
    threshold = capacity * fill
    unread = bytearray(4)

    def full() -> bool:
        try:
            fcntl.ioctl(fd, termios.FIONREAD, unread)
        except OSError:
            return False
        return int.from_bytes(unread, sys.byteorder) >= threshold

    return full


def _write(fd: int, frame: tuple[int, Any]) -> None:
    body = pickle.dumps(frame, protocol=pickle.HIGHEST_PROTOCOL)
    data = memoryview(_LENGTH.pack(len(body)) + body)
    while data:
        written = os.write(fd, data)
        data = data[written:]
