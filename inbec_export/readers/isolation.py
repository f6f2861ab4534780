"""Run a generator function in a child process and stream its items back to the caller.

Native parsers (libpff above all) can crash the interpreter on a hostile or damaged file.
:func:`iter_in_worker` runs the parsing generator in a child process, so that a crash
costs the file being read and not the run: the caller gets every item the child handed
over, then one :class:`WorkerFailure` saying how the child ended.

Transport: each item is pickled in the child and written to a pipe as soon as it is
produced (``batch_size=1``, the default), so a crash loses nothing already produced; the
parent reads the pipe through a large buffer, so many items cross per read. A larger
``batch_size`` saves a few tens of microseconds per item at the price of losing the
unsent part of a batch when the child crashes.

Limitations: items and arguments must be picklable; the child is started with ``fork``
on Linux when the caller runs a single thread (fast, nothing re-imported) and with
``spawn`` otherwise, where the generator function must be importable by module name.
"""

from __future__ import annotations

import faulthandler
import logging
import multiprocessing
import os
import pickle
import signal
import sys
import threading
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.context import DefaultContext, ForkContext, SpawnContext
from typing import Any, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Parent-side read buffer on the pipe, in bytes: many small items arrive per read.
READ_BUFFER_BYTES = 1024 * 1024

#: Seconds the parent waits for a child to exit before it is killed.
JOIN_TIMEOUT_SECONDS = 5.0

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
    raised a Python exception.
    """

    items: int
    exitcode: int | None = None
    signal_number: int | None = None
    error: str | None = None

    def describe(self, what: str) -> str:
        """One sentence for a failure record, e.g. ``describe("PST reader")``.

        Args:
            what: the name of the work the child did, as the user knows it.

        Returns:
            For example "PST reader crashed (signal 11, SIGSEGV) after 3 items; the rest
            of the file was not read".
        """
        if self.error is not None:
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
    func: Callable[..., Iterable[T]], *args: Any, batch_size: int = 1
) -> Generator[T | WorkerFailure, None, None]:
    """Yield the items of ``func(*args)``, computed in a child process.

    The child's items are streamed as they come; if the child crashes, exits early or
    raises, a single :class:`WorkerFailure` follows the items already received. Closing
    the returned generator (or an exception in the caller, KeyboardInterrupt included)
    stops and reaps the child.

    Args:
        func: a module-level generator function (it must be picklable under ``spawn``).
        *args: picklable arguments for ``func``.
        batch_size: items pickled together per write; 1 loses nothing on a crash.

    Returns:
        A generator of the child's items, possibly ending with one ``WorkerFailure``.
    """
    context = _context()
    reader, writer = context.Pipe(duplex=False)
    process = context.Process(
        target=_child_main, args=(writer, func, args, max(1, batch_size)), daemon=True
    )
    process.start()
    # The parent must drop its copy of the write end, or a dead child never gives EOF.
    writer.close()
    stream = os.fdopen(os.dup(reader.fileno()), "rb", buffering=READ_BUFFER_BYTES)
    reader.close()
    received = 0
    finished = False
    error: str | None = None
    try:
        while True:
            try:
                kind, payload = pickle.load(stream)
            except (EOFError, pickle.UnpicklingError, ValueError, OSError):
                break
            if kind == _ITEM:
                received += 1
                yield payload
            elif kind == _BATCH:
                for item in payload:
                    received += 1
                    yield item
            elif kind == _ERROR:
                error = str(payload)
            elif kind == _DONE:
                finished = True
                break
        stream.close()
        process.join(JOIN_TIMEOUT_SECONDS)
        failure = _failure(process.exitcode, received, finished, error)
        if failure is not None:
            yield failure
    finally:
        stream.close()
        _reap(process)


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


def _reap(process: multiprocessing.process.BaseProcess) -> None:
    """Stop the child if it still runs (the caller stopped early) and wait for it."""
    if process.is_alive():
        process.terminate()
        process.join(JOIN_TIMEOUT_SECONDS)
    if process.is_alive():
        logger.warning("worker %s ignored SIGTERM; killing it", process.pid)
        process.kill()
        process.join(JOIN_TIMEOUT_SECONDS)
    try:
        process.close()
    except ValueError:
        logger.warning("worker %s could not be reaped", process.pid)


def _child_main(
    writer: Connection, func: Callable[..., Iterable[Any]], args: tuple[Any, ...], batch: int
) -> None:
    """Body of the child: run the generator, write frames, end with DONE or ERROR."""
    # The parent reports the crash; a traceback dump on the user's terminal adds nothing.
    faulthandler.disable()
    fd = writer.fileno()
    pending: list[Any] = []
    try:
        for item in func(*args):
            if batch == 1:
                _write(fd, (_ITEM, item))
                continue
            pending.append(item)
            if len(pending) >= batch:
                _write(fd, (_BATCH, pending))
                pending = []
        if pending:
            _write(fd, (_BATCH, pending))
        _write(fd, (_DONE, None))
    except (BrokenPipeError, KeyboardInterrupt):
        # The parent stopped listening or the user interrupted: nothing left to report.
        pass
    except Exception as exc:
        try:
            if pending:
                _write(fd, (_BATCH, pending))
            _write(fd, (_ERROR, f"{type(exc).__name__}: {exc}"))
        except (BrokenPipeError, pickle.PicklingError, TypeError, AttributeError):
            pass
    finally:
        writer.close()


def _write(fd: int, frame: tuple[int, Any]) -> None:
    data = memoryview(pickle.dumps(frame, protocol=pickle.HIGHEST_PROTOCOL))
    while data:
        written = os.write(fd, data)
        data = data[written:]
