"""Tests of the worker-process isolation: streaming, crashes, errors and clean-up."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from isolation_helpers import (
    exits_silently,
    many_large,
    pid_then_sleep,
    three_then_segfault,
    two_then_raise,
)

from inbec_export.readers.isolation import WorkerFailure, iter_in_worker


def test_items_before_a_segfault_arrive_then_a_crash_failure() -> None:
    events = list(iter_in_worker(three_then_segfault))

    assert events[:3] == [1, 2, 3]
    assert len(events) == 4
    failure = events[3]
    assert isinstance(failure, WorkerFailure)
    assert failure.signal_number == signal.SIGSEGV
    assert failure.items == 3
    assert failure.describe("PST reader") == (
        "PST reader crashed (signal 11, SIGSEGV) after 3 items; the rest of the file was not read"
    )
    # This process survived the child's crash and can start another worker.
    assert list(iter_in_worker(many_large, 2, 8)) == [b"\x00" * 8, b"\x00\x00\x00\x01" * 2]


def test_python_exception_in_child_is_reported_after_its_items() -> None:
    events = list(iter_in_worker(two_then_raise))

    assert events[:2] == ["a", "b"]
    failure = events[2]
    assert isinstance(failure, WorkerFailure)
    assert failure.error == "ValueError: bad item 3"
    assert failure.signal_number is None
    assert failure.describe("PST reader") == (
        "PST reader failed with ValueError: bad item 3 after 2 items; "
        "the rest of the file was not read"
    )


def test_silent_exit_with_status_is_a_failure() -> None:
    events = list(iter_in_worker(exits_silently))

    assert events == [7, WorkerFailure(items=1, exitcode=3)]


def test_large_output_does_not_deadlock_and_keeps_order() -> None:
    # 300 items of 64 KiB: about 19 MiB, hundreds of times what a pipe buffers.
    started = time.monotonic()
    items = list(iter_in_worker(many_large, 300, 64 * 1024))

    assert len(items) == 300
    data = [item for item in items if isinstance(item, bytes) and len(item) == 64 * 1024]
    assert [int.from_bytes(item[:4], "big") for item in data] == list(range(300))
    assert time.monotonic() - started < 60


@pytest.mark.parametrize("batch_size", [1, 7, 1000])
def test_batch_sizes_give_the_same_items(batch_size: int) -> None:
    items = list(iter_in_worker(many_large, 50, 16, batch_size=batch_size))

    assert [int.from_bytes(item[:4], "big") for item in items if isinstance(item, bytes)] == list(
        range(50)
    )
    assert len(items) == 50


def test_closing_the_generator_stops_the_child(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    stream = iter_in_worker(pid_then_sleep, str(pid_file))

    first = next(stream)
    pid = int(pid_file.read_text(encoding="ascii"))
    assert first == pid
    stream.close()

    assert not _alive(pid)


def test_exception_in_the_caller_stops_the_child(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"

    def consume() -> None:
        for _item in iter_in_worker(pid_then_sleep, str(pid_file)):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        consume()

    assert not _alive(int(pid_file.read_text(encoding="ascii")))


def _alive(pid: int) -> bool:
    """True if ``pid`` is still a running process (a reaped child is gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
