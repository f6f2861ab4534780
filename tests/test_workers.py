"""`inbec analyze --workers N`: files read in parallel give the very same case folder."""

from __future__ import annotations

import json
from collections.abc import Generator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from inbec_export.cli import app
from inbec_export.model import ItemFailure, MessageRecord
from inbec_export.readers import iter_evidence
from inbec_export.sample.generator import generate_sample_case

runner = CliRunner()

#: Corpus files of every format, with messages spread over several files, so that the
#: rules that span messages (threads, mailboxes, IPs) see messages of several files.
CORPUS_FILES = (
    "pst/pst2john_2003_no-encryption_quickquick.pst",
    "pst/pst2john_2007_default_a1sellers.pst",
    "pst/tghanem_user1@test.lab.pst",
    "pst/aspose_PersonalStorage.pst",
    "msg/hfig_MAPI_sample.msg",
    "mbox/spamassassin_nice.mbox",
    "mbox/neomutt_test.mbox",
)


def _case_files(case_dir: Path) -> dict[str, bytes]:
    """Every file of a case folder by its path inside the folder, with its bytes."""
    return {
        str(path.relative_to(case_dir)): path.read_bytes()
        for path in sorted(case_dir.rglob("*"))
        if path.is_file()
    }


def _analyze(evidence: list[Path], out: Path, workers: int, *legit: str) -> None:
    args = ["analyze", *map(str, evidence), "--out", str(out), "--case", "workers"]
    for domain in legit:
        args += ["--legit", domain]
    result = runner.invoke(app, [*args, "--workers", str(workers)])
    assert result.exit_code == 0, result.output


def _assert_same_case(one: Path, two: Path) -> None:
    files_one, files_two = _case_files(one), _case_files(two)
    assert sorted(files_one) == sorted(files_two)
    different = [name for name in files_one if files_one[name] != files_two[name]]
    assert different == []


def test_sample_case_same_with_two_workers(tmp_path: Path) -> None:
    sample = generate_sample_case(tmp_path / "sample")
    legit = sample.legit_domains
    _analyze([sample.evidence_dir], tmp_path / "one", 1, *legit)
    _analyze([sample.evidence_dir], tmp_path / "two", 2, *legit)
    _assert_same_case(tmp_path / "one", tmp_path / "two")
    summary = json.loads((tmp_path / "two" / "summary.json").read_text("utf-8"))
    assert summary["totals"]["evidence_files"] == 9
    assert summary["totals"]["messages_written"] == 14
    assert summary["totals"]["findings"] == 22
    assert summary["findings_by_rule"]["thread-intrusion"] == 1


@pytest.mark.parametrize("in_workers", [True, False], ids=["prepared-in-workers", "prepared-here"])
def test_corpus_files_same_with_two_and_three_workers(
    corpus_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, in_workers: bool
) -> None:
    """The same case folder whichever process prepares the messages (the choice
    depends on the processors of the machine: both are taken here)."""
    from inbec_export import pipeline

    monkeypatch.setattr(pipeline, "prepares_in_workers", lambda workers: in_workers)
    evidence = [corpus_dir / name for name in CORPUS_FILES]
    _analyze(evidence, tmp_path / "one", 1, "acme-corp.com")
    _analyze(evidence, tmp_path / "two", 2, "acme-corp.com")
    _analyze(evidence, tmp_path / "three", 3, "acme-corp.com")
    _assert_same_case(tmp_path / "one", tmp_path / "two")
    _assert_same_case(tmp_path / "one", tmp_path / "three")
    summary = json.loads((tmp_path / "two" / "summary.json").read_text("utf-8"))
    # Listed by path: neomutt, spamassassin, hfig, aspose, quickquick, a1sellers, tghanem.
    assert [entry["messages"] for entry in summary["evidence"]] == [1, 3, 1, 0, 20, 17, 7]
    assert summary["totals"]["messages_written"] == 49
    assert summary["totals"]["non_mail_items"] == 6


def test_events_in_input_order_with_failures(tmp_path: Path) -> None:
    """Missing and unknown files keep their place among the files read in parallel."""
    good = tmp_path / "a.eml"
    good.write_bytes(b"From: a@example.com\r\nSubject: one\r\n\r\nbody\r\n")
    empty = tmp_path / "b.pst"
    empty.write_bytes(b"")
    other = tmp_path / "c.eml"
    other.write_bytes(b"From: c@example.com\r\nSubject: two\r\n\r\nbody\r\n")
    inputs = [good, empty, tmp_path / "gone.eml", other]
    single = list(iter_evidence(inputs))
    parallel = list(iter_evidence(inputs, workers=2))
    assert parallel == single
    kinds = [type(event).__name__ for event in parallel]
    assert kinds == [
        "FileOpened",
        "MessageRecord",
        "ItemFailure",
        "ItemFailure",
        "FileOpened",
        "MessageRecord",
    ]
    subjects = [e.subject for e in parallel if isinstance(e, MessageRecord)]
    assert subjects == ["one", "two"]
    reasons = [e.reason for e in parallel if isinstance(e, ItemFailure)]
    # A file gone between the listing and the reading is a failure, not a skip.
    assert reasons == ["empty file", "cannot open: no longer there"]


@pytest.mark.parametrize(
    ("processors", "workers", "expected"),
    [(2, 1, False), (2, 2, False), (2, 3, False), (4, 2, True), (8, 4, True), (4, 4, False)],
)
def test_workers_prepare_only_with_processors_to_spare(
    monkeypatch: pytest.MonkeyPatch, processors: int, workers: int, expected: bool
) -> None:
    from inbec_export import pipeline
    from inbec_export.readers import parallel

    monkeypatch.setattr(parallel, "default_workers", lambda: processors)
    assert pipeline.prepares_in_workers(workers) is expected


def test_workers_must_be_positive(tmp_path: Path) -> None:
    result = runner.invoke(app, ["analyze", str(tmp_path), "--workers", "0"])
    assert result.exit_code == 2


@pytest.mark.parametrize("workers", [2])
def test_stopping_early_leaves_no_worker(tmp_path: Path, workers: int) -> None:
    """Closing the event stream half way stops the workers and removes their spool."""
    sample = generate_sample_case(tmp_path / "sample")
    events = iter_evidence([sample.evidence_dir], workers=workers)
    assert isinstance(events, Generator)
    first = next(events)
    assert type(first).__name__ == "FileOpened"
    events.close()
    import multiprocessing

    assert multiprocessing.active_children() == []


def test_workers_are_reused_and_a_killed_one_costs_only_its_file(tmp_path: Path) -> None:
    """Two workers read twelve files; one is killed after the first event: the file it
    was reading (if any) gets one failure line, files it had not begun are read by
    another worker, and every other file arrives whole."""
    import multiprocessing
    import os
    import signal

    inputs = []
    for index in range(12):
        path = tmp_path / f"{index:02d}.eml"
        body = "".join(f"line {n} of message {index}\r\n" for n in range(2000))
        path.write_bytes(f"From: a{index}@example.com\r\nSubject: s{index}\r\n\r\n{body}".encode())
        inputs.append(path)
    events = iter_evidence(inputs, workers=2)
    first = next(events)
    children = multiprocessing.active_children()
    assert len(children) == 2
    os.kill(children[0].pid or 0, signal.SIGKILL)
    rest = [first, *events]

    opened = [e.evidence.path for e in rest if type(e).__name__ == "FileOpened"]
    subjects = [e.subject for e in rest if isinstance(e, MessageRecord)]
    failed = {e.evidence_path: e.reason for e in rest if isinstance(e, ItemFailure)}
    assert set(failed) <= set(map(str, inputs))
    for reason in failed.values():
        assert reason == (
            "reader worker ended (status -9) before the end of the file; "
            "the rest of the file was not read"
        )
    # Each file either arrived whole or failed: nothing is lost without a line saying so.
    whole = [str(p) for p in inputs if f"s{inputs.index(p)}" in subjects]
    assert sorted(whole + list(failed)) == sorted(map(str, inputs))
    assert len(failed) <= 1
    # Still in input order, whichever worker read a file.
    assert opened == sorted(opened)
    assert set(whole) <= set(opened)
    assert multiprocessing.active_children() == []


def test_workers_that_end_before_beginning_a_file_cost_a_failure_not_a_hang(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import multiprocessing

    from isolation_helpers import exit_at_once

    from inbec_export.readers import parallel

    monkeypatch.setattr(parallel, "_serve_files", exit_at_once)
    inputs = []
    for index in range(3):
        path = tmp_path / f"{index}.eml"
        path.write_bytes(b"From: a@example.com\r\nSubject: s\r\n\r\nbody\r\n")
        inputs.append(path)

    events = list(iter_evidence(inputs, workers=2))

    assert events == [
        ItemFailure(
            str(path),
            None,
            "not read: 3 reader workers ended (the last with status 7) before beginning the file",
        )
        for path in inputs
    ]
    assert multiprocessing.active_children() == []


def _fork_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start the workers with ``fork`` even when this process runs threads (the test
    suite may), so that they read with the stand-in this test put in place of the
    reader; a spawned worker imports the real one."""
    import multiprocessing

    from inbec_export.readers import parallel

    monkeypatch.setattr(parallel, "_context", lambda: multiprocessing.get_context("fork"))


@pytest.mark.corpus
def test_a_pst_that_crashes_its_worker_gives_the_failure_of_one_worker(
    corpus_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker reads a PST itself; when libpff takes the worker down, the file's
    failure reads as with one worker, and the other files arrive whole."""
    import multiprocessing

    from pst_helpers import crash_failure, crash_on_names_with_crash, distinct_copy

    from inbec_export.readers import pst

    source = corpus_dir / "pst" / "pst2john_2003_no-encryption_quickquick.pst"
    for name in ("a-good.pst", "b-crash.pst", "c-good.pst", "d-good.pst"):
        distinct_copy(source, tmp_path / name)
    monkeypatch.setattr(pst, "read_pst_items", crash_on_names_with_crash)
    _fork_workers(monkeypatch)

    single = list(iter_evidence([tmp_path]))
    parallel = list(iter_evidence([tmp_path], workers=2))

    assert parallel == single
    failures = [e for e in parallel if isinstance(e, ItemFailure)]
    assert failures == [crash_failure(tmp_path / "b-crash.pst")]
    records = [e for e in parallel if isinstance(e, MessageRecord)]
    assert len(records) == 3 * 20
    assert multiprocessing.active_children() == []


def test_a_pst_that_hangs_its_worker_is_stopped_as_with_one_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The caller watches a worker reading a PST as it watches the PST reader's child:
    no event for the stall time, and the worker is stopped with the same failure."""
    import multiprocessing
    import time

    from isolation_helpers import pst_events_then_hang

    from inbec_export.readers import pst

    for name in ("a.pst", "b.pst"):
        (tmp_path / name).write_bytes(b"!BDN" + name.encode())
    good = tmp_path / "c.eml"
    good.write_bytes(b"From: a@example.com\r\nSubject: after\r\n\r\nbody\r\n")
    monkeypatch.setattr(pst, "read_pst_items", pst_events_then_hang)
    monkeypatch.setenv("INBEC_PST_STALL_SECONDS", "1")
    _fork_workers(monkeypatch)

    single = list(iter_evidence([tmp_path]))
    started = time.monotonic()
    parallel = list(iter_evidence([tmp_path], workers=2))
    took = time.monotonic() - started

    assert parallel == single
    stalled = [e.reason for e in parallel if isinstance(e, ItemFailure) and e.item is None]
    reason = (
        "PST reader stalled: no progress for 1 s after 2 items; the rest of the file was not read"
    )
    assert stalled == [reason, reason]
    assert [e.subject for e in parallel if isinstance(e, MessageRecord)] == ["after"]
    assert took < 30  # stopped after the stall time, not after the helper's long hang
    assert multiprocessing.active_children() == []


@pytest.mark.corpus
def test_workers_read_psts_themselves_without_a_child_of_their_own(
    corpus_dir: Path, tmp_path: Path
) -> None:
    import multiprocessing

    from pst_helpers import distinct_copy

    source = corpus_dir / "pst" / "aspose_Outlook.pst"
    for index in range(4):
        distinct_copy(source, tmp_path / f"{index}.pst")
    events = iter_evidence([tmp_path], workers=2)
    next(events)
    workers = multiprocessing.active_children()
    assert len(workers) == 2
    for worker in workers:
        children = Path(f"/proc/{worker.pid}/task/{worker.pid}/children").read_text("ascii")
        assert children.split() == []
    rest = list(events)
    assert sum(1 for e in rest if isinstance(e, MessageRecord)) > 0
    assert not [e for e in rest if isinstance(e, ItemFailure)]


def test_the_disk_space_of_what_was_handed_on_is_given_back_while_a_file_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A large file read ahead by a worker does not keep its whole spool on disk until
    its end: the part already handed on is released as the caller goes."""
    import os
    import tempfile

    from inbec_export.readers import parallel
    from inbec_export.sample.generator import write_large_mbox

    release = 256 * 1024
    monkeypatch.setattr(parallel, "RELEASE_BYTES", release)
    spool_root = tmp_path / "tmp"
    spool_root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool_root))
    mbox = tmp_path / "evidence" / "large.mbox"
    mbox.parent.mkdir()
    write_large_mbox(mbox, 3000)

    seen: list[tuple[int, int]] = []
    records = 0
    events = iter_evidence([mbox.parent], workers=2)
    for event in events:
        if not isinstance(event, MessageRecord):
            continue
        records += 1
        if records in (1000, 2000):
            (spool,) = spool_root.glob("inbec-spool-*/*.spool")
            stat = os.stat(spool)
            seen.append((stat.st_size, stat.st_blocks * 512))
    assert records == 3000
    # By the 2,000th message most of what was spooled before it takes no disk space.
    size, allocated = seen[1]
    assert size > 4 * release
    assert allocated < size - 2 * release
    assert list(spool_root.iterdir()) == []


def test_a_stopped_worker_does_not_hold_the_run_and_its_file_is_read_by_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker that stops before beginning its file (a stopped process, a native
    loop) is stopped after the stall time; the file goes to another worker and the
    events are those of one worker."""
    import multiprocessing
    import time

    from isolation_helpers import serve_files_first_worker_stops

    from inbec_export.readers import parallel

    inputs = []
    for index in range(6):
        path = tmp_path / "evidence" / f"{index}.eml"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(
            f"From: a{index}@example.com\r\nSubject: s{index}\r\n\r\nbody\r\n".encode()
        )
        inputs.append(path)
    single = list(iter_evidence(inputs))
    monkeypatch.setenv("INBEC_PST_STALL_SECONDS", "1")
    monkeypatch.setenv("INBEC_TEST_STOP_MARKER", str(tmp_path / "stopped"))
    monkeypatch.setattr(parallel, "STARTUP_GRACE_SECONDS", 0.0)
    monkeypatch.setattr(parallel, "_serve_files", serve_files_first_worker_stops)
    _fork_workers(monkeypatch)

    started = time.monotonic()
    parallel_events = list(iter_evidence(inputs, workers=2))
    took = time.monotonic() - started

    assert (tmp_path / "stopped").exists()
    assert parallel_events == single
    assert took < 15
    assert multiprocessing.active_children() == []


def test_a_worker_hashing_a_large_file_for_longer_than_the_stall_time_is_not_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hashing comes before the first event; the worker shows it is at work meanwhile."""
    import time

    import inbec_export.readers as readers
    from inbec_export.readers import parallel

    real_hash = readers.hash_file

    def slow_hash(path: Path, progress: object = None) -> tuple[int, str]:
        for _ in range(15):  # 3 s, three times the stall time
            time.sleep(0.2)
            if callable(progress):
                progress()
        return real_hash(path)

    path = tmp_path / "a.eml"
    path.write_bytes(b"From: a@example.com\r\nSubject: slow\r\n\r\nbody\r\n")
    monkeypatch.setenv("INBEC_PST_STALL_SECONDS", "1")
    monkeypatch.setattr(parallel, "STARTUP_GRACE_SECONDS", 0.0)
    monkeypatch.setattr(parallel, "PULSE_SECONDS", 0.2)
    monkeypatch.setattr(readers, "hash_file", slow_hash)
    _fork_workers(monkeypatch)

    events = list(iter_evidence([path], workers=2))

    assert [e.subject for e in events if isinstance(e, MessageRecord)] == ["slow"]
    assert not [e for e in events if isinstance(e, ItemFailure)]
