"""Tests of the worker-process isolation: streaming, crashes, errors, stalls and clean-up."""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import pickle
import signal
import time
from pathlib import Path

import pytest
from isolation_helpers import (
    HANG_SECONDS,
    counted_large,
    exits_silently,
    many_large,
    numbered_large,
    own_pid,
    pid_then_sleep,
    pst_events_then_hang,
    slowly,
    summarised,
    three_then_segfault,
    two_then_hang,
    two_then_raise,
)

from inbec_export.model import EvidenceFile, ItemFailure
from inbec_export.readers import pst
from inbec_export.readers.isolation import (
    MAX_AHEAD,
    PIPE_BYTES,
    STALL_SECONDS,
    WorkerFailure,
    iter_in_worker,
    read_ahead,
    widen_pipe,
    worker_session,
)

#: Stall timeout of the watchdog tests, in seconds: short, yet far above scheduling noise.
TEST_STALL_SECONDS = 1.0


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


def test_the_child_reads_ahead_by_a_wide_pipe_while_the_caller_is_busy(tmp_path: Path) -> None:
    # The caller takes one item of 16 KiB and then works on it: the child goes on
    # reading into the pipe. With Linux's default 64 KiB it could get 4 items ahead;
    # the pipe asked for (1 MiB where the system allows it) holds many more.
    limit = int(Path("/proc/sys/fs/pipe-max-size").read_text("ascii"))
    capacity = min(PIPE_BYTES, limit)
    size = 16 * 1024
    count_file = tmp_path / "count"
    stream = iter_in_worker(counted_large, str(count_file), 200, size)
    assert next(stream) == bytes(size)
    deadline = time.monotonic() + 10
    # Each frame adds its length and pickle header, and a pipe holds whole pages: at
    # least half of the capacity is counted on.
    expected = capacity // (2 * size)
    sent = 0
    while time.monotonic() < deadline:
        text = count_file.read_text("ascii") if count_file.exists() else "0"
        sent = int(text or 0)
        if sent >= expected:
            break
        time.sleep(0.01)
    assert sent >= expected > 4
    stream.close()


def test_widen_pipe_gives_the_capacity_asked_for_up_to_the_system_limit() -> None:
    limit = int(Path("/proc/sys/fs/pipe-max-size").read_text("ascii"))
    read_end, write_end = os.pipe()
    try:
        assert widen_pipe(read_end, 256 * 1024) == 256 * 1024
        assert widen_pipe(read_end, limit * 4) == limit
    finally:
        os.close(read_end)
        os.close(write_end)


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


def test_a_stalled_child_is_killed_after_its_items(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    started = time.monotonic()
    stream = iter_in_worker(
        two_then_hang, str(pid_file), HANG_SECONDS, stall_seconds=TEST_STALL_SECONDS
    )

    assert next(stream) == "a"
    assert next(stream) == "b"
    failure = next(stream)
    elapsed = time.monotonic() - started

    assert failure == WorkerFailure(items=2, stalled_seconds=TEST_STALL_SECONDS)
    assert isinstance(failure, WorkerFailure)
    assert failure.describe("PST reader") == (
        "PST reader stalled: no progress for 1 s after 2 items; the rest of the file was not read"
    )
    # Killed and reaped before the generator ends: no zombie is left behind.
    assert not _alive(int(pid_file.read_text(encoding="ascii")))
    assert multiprocessing.active_children() == []
    assert list(stream) == []
    assert TEST_STALL_SECONDS <= elapsed < HANG_SECONDS / 6


def test_a_stopped_child_is_killed(tmp_path: Path) -> None:
    # The reported case: a worker stopped with SIGSTOP sends nothing more, like a native loop.
    pid_file = tmp_path / "pid"
    stream = iter_in_worker(pid_then_sleep, str(pid_file), stall_seconds=TEST_STALL_SECONDS)
    pid = next(stream)
    assert isinstance(pid, int)
    os.kill(pid, signal.SIGSTOP)

    events = list(stream)

    failure = events[-1]
    assert isinstance(failure, WorkerFailure)
    assert failure.stalled_seconds == TEST_STALL_SECONDS
    assert failure.items == len(events)
    assert all(event == -1 for event in events[:-1])
    assert not _alive(pid)


def test_a_slow_child_that_keeps_sending_is_not_killed() -> None:
    # One item every 0.3 s for 1.5 s in all: longer than the timeout, never silent for it.
    events = list(iter_in_worker(slowly, 5, 0.3, stall_seconds=TEST_STALL_SECONDS))

    assert events == [0, 1, 2, 3, 4]


def test_time_spent_by_the_caller_does_not_count_as_a_stall() -> None:
    # Items of 4 MiB fill the pipe: the child waits on the slow caller, not the reverse.
    events = []
    for event in iter_in_worker(many_large, 2, 4 * 1024 * 1024, stall_seconds=0.5):
        events.append(event)
        time.sleep(0.75)

    assert len(events) == 2
    assert not any(isinstance(event, WorkerFailure) for event in events)


@pytest.mark.parametrize("seconds", [0, -1.0])
def test_stall_timeout_must_be_positive(seconds: float) -> None:
    with pytest.raises(ValueError, match="stall_seconds must be positive"):
        next(iter_in_worker(many_large, 1, 8, stall_seconds=seconds))


def test_pst_reader_reports_a_stall_as_one_failure_and_keeps_the_items(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pst, "read_pst_items", pst_events_then_hang)
    evidence = EvidenceFile(path="case/mailbox.pst", format="pst", size=0, sha256="0" * 64)

    events = list(pst.PstReader(stall_seconds=TEST_STALL_SECONDS).read(evidence))

    assert events == [
        ItemFailure("case/mailbox.pst", "item 1", "first"),
        ItemFailure("case/mailbox.pst", "item 2", "second"),
        ItemFailure(
            "case/mailbox.pst",
            None,
            "PST reader stalled: no progress for 1 s after 2 items; "
            "the rest of the file was not read",
        ),
    ]


def test_pst_stall_timeout_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(pst.STALL_SECONDS_ENV, raising=False)
    assert pst.PstReader().stall_seconds == STALL_SECONDS == 300

    monkeypatch.setenv(pst.STALL_SECONDS_ENV, "42.5")
    assert pst.PstReader().stall_seconds == 42.5
    assert pst.PstReader(stall_seconds=7).stall_seconds == 7


@pytest.mark.parametrize("value", ["soon", "0", "-5", "inf", "nan"])
def test_a_bad_stall_timeout_in_the_environment_keeps_the_default(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, value: str
) -> None:
    monkeypatch.setenv(pst.STALL_SECONDS_ENV, value)
    pst._stall_seconds_from.cache_clear()

    with caplog.at_level(logging.WARNING, logger=pst.__name__):
        assert pst.PstReader().stall_seconds == STALL_SECONDS
        # Said once per run, not once per PST file.
        assert pst.PstReader().stall_seconds == STALL_SECONDS

    warning = f"INBEC_PST_STALL_SECONDS={value!r} is not a positive number of seconds"
    assert caplog.text.count(warning) == 1


def test_a_session_reuses_one_child_and_ends_it_promptly() -> None:
    with worker_session():
        first = list(iter_in_worker(own_pid, 3))
        second = list(iter_in_worker(own_pid, 2))
        errors = list(iter_in_worker(two_then_raise))
        third = list(iter_in_worker(own_pid, 1))
        started = time.monotonic()
    ended = time.monotonic() - started

    assert len(set(first)) == 1
    assert second == [first[0]] * 2
    # A Python error ends that generator only: the same child runs the next one.
    assert errors[:2] == ["a", "b"] and isinstance(errors[2], WorkerFailure)
    assert errors[2].error == "ValueError: bad item 3"
    assert third == [first[0]]
    assert first[0] != os.getpid()
    # The idle child leaves as soon as the session closes its requests pipe, instead of
    # being waited for and then terminated.
    assert ended < 2.0
    assert not _alive(first[0])


def test_a_child_with_spare_work_does_it_once_the_parent_is_half_a_pipe_behind(
    tmp_path: Path,
) -> None:
    done, count, size = tmp_path / "done", 100, 16 * 1024
    with worker_session(spare=summarised):
        # Asked ahead, the child writes while nothing is taken from the pipe.
        assert read_ahead(numbered_large, str(done), count, size)
        deadline = time.monotonic() + 30
        while not done.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert done.exists(), "the child finished without waiting for room in the pipe"
        items = list(iter_in_worker(numbered_large, str(done), count, size))

    # Every item, in order: the first ones as they were read, until the pipe was half
    # full; from there on what the spare work made of them (much smaller, so the pipe
    # never filled up and the child never waited).
    assert [index for index, _ in items] == list(range(count))
    frame = 8 + len(pickle.dumps((0, (0, bytes(size))), protocol=pickle.HIGHEST_PROTOCOL))
    read_end, write_end = os.pipe()
    try:
        capacity = widen_pipe(read_end, PIPE_BYTES) or 64 * 1024
    finally:
        os.close(read_end)
        os.close(write_end)
    raw = math.ceil((capacity // 2) / frame)
    assert items[:raw] == [(index, bytes(size)) for index in range(raw)]
    assert items[raw:] == [(index, size) for index in range(raw, count)]


def test_a_child_asked_ahead_reads_the_next_request_before_the_caller_gets_to_it(
    tmp_path: Path,
) -> None:
    first_count, second_count = tmp_path / "first", tmp_path / "second"
    with worker_session():
        assert read_ahead(counted_large, str(first_count), 3, 1024)
        assert read_ahead(counted_large, str(second_count), 2, 1024)
        for count in range(1, MAX_AHEAD - 1):
            assert read_ahead(own_pid, count)
        # MAX_AHEAD requests ahead at most: one more is left to its own call.
        assert not read_ahead(own_pid, MAX_AHEAD)
        deadline = time.monotonic() + 10
        while not second_count.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        # The child finished the first request and began the second on its own.
        assert first_count.read_text("ascii") == "3"
        assert second_count.exists()
        first = list(iter_in_worker(counted_large, str(first_count), 3, 1024))
        second = list(iter_in_worker(counted_large, str(second_count), 2, 1024))
        pids = [pid for count in range(1, MAX_AHEAD - 1) for pid in iter_in_worker(own_pid, count)]
        last = list(iter_in_worker(own_pid, MAX_AHEAD))
    assert first == [bytes(1024)] * 3
    assert second == [bytes(1024)] * 2
    assert MAX_AHEAD == 64
    assert len(pids) == sum(range(1, MAX_AHEAD - 1))
    assert set(pids) == set(last) and len(set(pids)) == 1 and not _alive(pids[0])


def test_a_call_for_another_request_than_the_one_asked_ahead_gets_its_own_items() -> None:
    with worker_session():
        assert read_ahead(own_pid, 2)
        other = list(iter_in_worker(many_large, 2, 8))
        after = list(iter_in_worker(own_pid, 1))
    assert other == [b"\x00" * 8, b"\x00\x00\x00\x01" * 2]
    assert len(after) == 1 and after[0] != os.getpid()


def test_a_crash_while_reading_ahead_is_reported_to_the_call_for_that_request() -> None:
    with worker_session():
        assert read_ahead(own_pid, 2)
        assert read_ahead(three_then_segfault)
        pids = list(iter_in_worker(own_pid, 2))
        crashed = list(iter_in_worker(three_then_segfault))
        after = list(iter_in_worker(own_pid, 1))
    assert len(set(pids)) == 1
    assert crashed[:3] == [1, 2, 3]
    failure = crashed[3]
    assert isinstance(failure, WorkerFailure)
    assert failure.signal_number == signal.SIGSEGV and failure.items == 3
    # A fresh child serves what comes after.
    assert after[0] != pids[0]


def test_a_child_asked_ahead_by_a_stream_left_open_is_not_reused_for_another_request() -> None:
    """Two streams open at once in one session: the first's child, asked ahead for a
    request nobody reads, must not serve a later call (its frames would come first)."""
    with worker_session():
        first = iter_in_worker(own_pid, 2)
        first_pid = next(first)
        assert read_ahead(many_large, 1, 8)  # sent to the child ``first`` reads from
        second = iter_in_worker(own_pid, 1)
        second_pid = next(second)  # a child of its own: the first one is busy
        assert list(first) == [first_pid]  # ends cleanly; its child is kept, asked ahead
        assert list(second) == []
        later = list(iter_in_worker(own_pid, 2))
    assert second_pid != first_pid
    assert len(later) == 2 and later[0] == later[1]
    assert later[0] not in (first_pid, second_pid)


def test_read_ahead_outside_a_session_sends_nothing() -> None:
    assert not read_ahead(own_pid, 1)


def test_a_session_replaces_a_child_that_crashed() -> None:
    with worker_session():
        before = list(iter_in_worker(own_pid, 1))
        crashed = list(iter_in_worker(three_then_segfault))
        after = list(iter_in_worker(own_pid, 2))

    assert crashed[:3] == [1, 2, 3]
    assert isinstance(crashed[3], WorkerFailure)
    assert crashed[3].signal_number == signal.SIGSEGV
    assert after[0] == after[1] != before[0]
    assert not _alive(before[0]) and not _alive(after[0])


def test_a_session_replaces_a_child_left_mid_stream(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    with worker_session():
        stream = iter_in_worker(pid_then_sleep, str(pid_file))
        busy = next(stream)
        stream.close()
        after = list(iter_in_worker(own_pid, 1))

    assert busy == int(pid_file.read_text("ascii"))
    assert not _alive(busy)
    assert after[0] != busy


def test_a_child_dies_with_its_parent_and_ignores_ctrl_c(tmp_path: Path) -> None:
    """A parent that dies without cleaning up (SIGKILL, or stopped while its clean-up
    waited) leaves no reader child behind, even one that sends nothing (busy in native
    code), which would otherwise live on."""
    import subprocess
    import sys

    pid_file = tmp_path / "pid"
    script = (
        "import os, sys\n"
        "sys.path.insert(0, sys.argv[2])\n"
        "from isolation_helpers import HANG_SECONDS, two_then_hang\n"
        "from inbec_export.readers.isolation import iter_in_worker\n"
        "stream = iter_in_worker(two_then_hang, sys.argv[1], HANG_SECONDS)\n"
        "next(stream)\n"
        "next(stream)\n"
        "print('ready', flush=True)\n"
        "os._exit(0)  # no clean-up at all\n"
    )
    helpers = str(Path(__file__).parent)
    done = subprocess.run(
        [sys.executable, "-c", script, str(pid_file), helpers],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout == "ready\n"
    child = int(pid_file.read_text(encoding="ascii"))
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)


def test_a_child_ignores_sigint(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    stream = iter_in_worker(pid_then_sleep, str(pid_file))
    child = next(stream)
    assert isinstance(child, int)
    os.kill(child, signal.SIGINT)
    time.sleep(0.5)
    assert _alive(child)
    assert next(stream) == -1  # still streaming
    stream.close()
    assert not _alive(child)


def test_a_signal_before_the_child_is_set_up_ends_it_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """SIGTERM sent at once to a child that has not yet set up its handlers (slowed
    here) waits for that set-up, then ends the child quietly, instead of running the
    Python handler this process had when it started the child."""
    from inbec_export.readers import isolation

    real_quiet = isolation.quiet_child

    def slow_quiet() -> None:
        time.sleep(0.3)
        real_quiet()

    class ParentHandlerRan(Exception):
        pass

    def raising_handler(number: int, _frame: object) -> None:
        raise ParentHandlerRan(number)

    monkeypatch.setattr(isolation, "quiet_child", slow_quiet)
    monkeypatch.setattr(isolation, "_context", lambda: multiprocessing.get_context("fork"))
    previous = signal.signal(signal.SIGTERM, raising_handler)
    try:
        worker = isolation._Worker()
        os.kill(worker.process.pid or 0, signal.SIGTERM)
        worker.process.join(10)
        exitcode = worker.process.exitcode
        worker.discard()
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert exitcode == -signal.SIGTERM
    assert "Traceback" not in capfd.readouterr().err


def test_a_stopped_child_is_ended_at_once_not_after_the_join_timeout() -> None:
    from inbec_export.readers import isolation

    worker = isolation._Worker()
    pid = worker.process.pid or 0
    assert worker.submit(own_pid, (1,), 1)
    assert worker.frames.next(10) is not None  # the child runs
    os.kill(pid, signal.SIGSTOP)
    started = time.monotonic()
    worker.discard()
    assert time.monotonic() - started < isolation.JOIN_TIMEOUT_SECONDS / 2
    assert not _alive(pid)
