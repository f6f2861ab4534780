"""Generator functions run in worker processes by the isolation tests (module level, so
that a child process can find them)."""

from __future__ import annotations

import ctypes
import os
import signal
import time
from collections.abc import Iterator

from inbec_export.model import EvidenceFile, ItemFailure, ReadEvent
from inbec_export.readers.parallel import _serve_files

#: The real body of a ``--workers`` worker, kept before a test puts a stand-in in its place.
REAL_SERVE_FILES = _serve_files

#: How long the hanging helpers sit silent, in seconds: far beyond any test's timeout.
HANG_SECONDS = 60.0


def three_then_segfault() -> Iterator[int]:
    """Yield 1, 2, 3, then crash the interpreter with a read of address 0."""
    yield from (1, 2, 3)
    ctypes.string_at(0)


def two_then_raise() -> Iterator[str]:
    """Yield two items, then raise a Python exception."""
    yield "a"
    yield "b"
    raise ValueError("bad item 3")


def many_large(count: int, size: int) -> Iterator[bytes]:
    """Yield ``count`` items of ``size`` bytes each (far more than a pipe buffer holds)."""
    for index in range(count):
        yield index.to_bytes(4, "big") * (size // 4)


def pid_then_sleep(path: str) -> Iterator[int]:
    """Write the child's pid to ``path``, yield it, then keep the child busy forever."""
    with open(path, "w", encoding="ascii") as handle:
        handle.write(str(os.getpid()))
    yield os.getpid()
    while True:
        time.sleep(0.05)
        yield -1


def exits_silently() -> Iterator[int]:
    """Yield one item, then leave the process with status 3 (no Python exception)."""
    yield 7
    os._exit(3)


def two_then_hang(path: str, seconds: float) -> Iterator[str]:
    """Write the child's pid to ``path``, yield two items, then send nothing for ``seconds``
    (what a native parser stuck in a loop looks like from the parent)."""
    with open(path, "w", encoding="ascii") as handle:
        handle.write(str(os.getpid()))
    yield "a"
    yield "b"
    time.sleep(seconds)
    yield "too late"


def slowly(count: int, interval: float) -> Iterator[int]:
    """Yield ``count`` items, one every ``interval`` seconds."""
    for index in range(count):
        time.sleep(interval)
        yield index


def pst_events_then_hang(evidence: EvidenceFile) -> Iterator[ReadEvent]:
    """Stand-in for ``read_pst_items``: two events of ``evidence``, then a long hang."""
    yield ItemFailure(evidence.path, "item 1", "first")
    yield ItemFailure(evidence.path, "item 2", "second")
    time.sleep(HANG_SECONDS)


def own_pid(count: int) -> Iterator[int]:
    """Yield the child's pid ``count`` times."""
    for _ in range(count):
        yield os.getpid()


def exit_at_once(*_args: object) -> None:
    """Stand-in for a worker's body that ends with status 7 before doing anything."""
    os._exit(7)


def counted_large(path: str, count: int, size: int) -> Iterator[bytes]:
    """Yield ``count`` items of ``size`` bytes, writing to ``path`` how many were handed
    to the pipe so far (after each one)."""
    for index in range(count):
        yield bytes(size)
        with open(path, "w", encoding="ascii") as handle:
            handle.write(str(index + 1))


def serve_files_first_worker_stops(*args: object) -> None:
    """Body of a ``--workers`` worker whose first instance stops itself (SIGSTOP) before
    reading anything; the others serve files as usual. The marker file named by
    ``INBEC_TEST_STOP_MARKER`` decides which is first."""
    try:
        fd = os.open(os.environ["INBEC_TEST_STOP_MARKER"], os.O_CREAT | os.O_EXCL)
    except FileExistsError:
        pass
    else:
        os.close(fd)
        os.kill(os.getpid(), signal.SIGSTOP)
    REAL_SERVE_FILES(*args)  # type: ignore[arg-type]


def numbered_large(path: str, count: int, size: int) -> Iterator[tuple[int, bytes]]:
    """Yield ``count`` items ``(index, size bytes)``, then create ``path``."""
    for index in range(count):
        yield index, bytes(size)
    with open(path, "w", encoding="ascii") as handle:
        handle.write("done")


def summarised(item: tuple[int, bytes]) -> tuple[int, int]:
    """Spare work for :func:`numbered_large`: an item's payload replaced by its length."""
    index, payload = item
    return index, len(payload)
