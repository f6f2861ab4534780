"""Tests of the PST/OST reader on the real PST files of the shared corpus."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pst_helpers import (
    crash_failure,
    crash_on_names_with_crash,
    distinct_copy,
    marked_items,
    two_items_then_segfault,
)

from inbec_export import readers
from inbec_export.model import (
    Address,
    Attachment,
    EvidenceFile,
    ItemFailure,
    MessageRecord,
    NonMailItem,
    ReadEvent,
)
from inbec_export.readers import FileOpened, isolation, iter_evidence, pst
from inbec_export.readers.base import hash_file, sniff_format
from inbec_export.readers.pst import PstReader, is_mail_class, parse_property_context

pytestmark = pytest.mark.corpus


def _evidence(path: Path) -> EvidenceFile:
    size, sha256 = hash_file(path)
    return EvidenceFile(path=str(path), format="pst", size=size, sha256=sha256)


def _read(corpus_dir: Path, name: str, isolated: bool = False) -> list[ReadEvent]:
    return list(PstReader(isolated=isolated).read(_evidence(corpus_dir / "pst" / name)))


def _records(events: list[ReadEvent]) -> dict[str, MessageRecord]:
    return {event.item_id: event for event in events if isinstance(event, MessageRecord)}


#: (mail records including embedded messages, non-mail items) per corpus file.
EXPECTED_COUNTS = {
    "aranetic_flags_jane_doe.pst": (8, 0),
    "aranetic_multiple_to_cc.pst": (1, 0),
    "aspose_Outlook.pst": (18, 3),
    "aspose_PersonalStorage.pst": (0, 6),
    "edrm_enron_sample.pst": (0, 1),
    "hughbe_Outlook98Backup.pst": (0, 0),
    "java-libpst_dist-list.pst": (0, 4),
    "pst-exp_test_ansi.pst": (1, 0),
    "pst-exp_test_unicode.pst": (2, 0),
    "pst2john_2003_compressable-encryption_quickbrownfox.pst": (68, 0),
    "pst2john_2003_no-encryption_quickquick.pst": (20, 0),
    "pst2john_2007_default_a1sellers.pst": (17, 0),
    "pst2john_2k_outlook_qwerty1234.pst": (73, 0),
    "pst2john_97_outlook_pass12345.pst": (294, 0),
    "pst2john_openwall.pst": (0, 1),
    "tghanem_user1@test.lab.pst": (7, 0),
}


def test_every_corpus_pst_is_expected(corpus_dir: Path) -> None:
    assert sorted(p.name for p in (corpus_dir / "pst").glob("*.pst")) == sorted(EXPECTED_COUNTS)


@pytest.mark.parametrize("name", sorted(EXPECTED_COUNTS))
def test_counts_per_file_in_a_worker_without_failures(corpus_dir: Path, name: str) -> None:
    events = _read(corpus_dir, name, isolated=True)

    kinds = Counter(type(event).__name__ for event in events)
    assert (kinds["MessageRecord"], kinds["NonMailItem"]) == EXPECTED_COUNTS[name]
    assert kinds["ItemFailure"] == 0
    assert len(events) == sum(EXPECTED_COUNTS[name])


def test_worker_and_in_process_reads_are_identical(corpus_dir: Path) -> None:
    name = "aspose_Outlook.pst"
    assert _read(corpus_dir, name, isolated=True) == _read(corpus_dir, name, isolated=False)


def test_the_child_sends_items_undecoded_and_they_complete_to_the_records(
    corpus_dir: Path,
) -> None:
    """The reading child leaves the text of each item undecoded; completing the items,
    after a trip through pickle as in the pipe, gives exactly the in-process records."""
    path = corpus_dir / "pst" / "pst2john_2007_default_a1sellers.pst"
    raw = list(pst.read_pst_items(_evidence(path)))
    items = [event for event in raw if isinstance(event, pst.PstItem)]
    assert items and all(item.record.subject is None for item in items)
    assert all(item.record.from_ == [] for item in items)
    assert any(item.record.attachments for item in items)  # listed by the child
    shipped = [pickle.loads(pickle.dumps(event)) for event in raw]
    completed = list(pst.complete_items(shipped))
    records = [event for event in completed if isinstance(event, MessageRecord)]
    assert completed == list(pst.read_pst(_evidence(path)))
    assert len(records) == len(items)
    assert sum(1 for record in records if record.subject) > len(records) // 2


def test_a_pst_whose_name_is_not_utf8_is_read(corpus_dir: Path, tmp_path: Path) -> None:
    """libpff takes file names as UTF-8: a name in another encoding (here Latin-1, as
    copied from an old Windows share) is opened by the reader and handed over."""
    source = corpus_dir / "pst" / "pst2john_2003_no-encryption_quickquick.pst"
    odd = os.path.join(os.fsencode(tmp_path), b"caf\xe9.pst")
    os.symlink(os.fsencode(source), odd)
    path = Path(os.fsdecode(odd))

    events = list(PstReader().read(_evidence(path)))
    expected = list(PstReader().read(_evidence(source)))

    assert not [e for e in events if isinstance(e, ItemFailure)]
    records = [e for e in events if isinstance(e, MessageRecord)]
    assert len(records) == 20
    assert [r.item_id for r in records] == [
        e.item_id for e in expected if isinstance(e, MessageRecord)
    ]
    assert {r.evidence_path for r in records} == {str(path)}


def test_item_ids_are_stable_across_reads(corpus_dir: Path) -> None:
    first = [getattr(e, "item_id", None) for e in _read(corpus_dir, "aspose_Outlook.pst")]
    again = [getattr(e, "item_id", None) for e in _read(corpus_dir, "aspose_Outlook.pst")]
    assert first == again
    assert first[:3] == ["node 2097476", "node 2097508", "node 2097540"]


def test_multiple_to_and_cc_recipients(corpus_dir: Path) -> None:
    record = _records(_read(corpus_dir, "aranetic_multiple_to_cc.pst"))["node 2097700"]

    assert record.folder == "Top of Outlook data file/Inbox"
    assert record.message_class == "IPM.Note"
    assert record.subject == "Multiple recipients"
    assert record.from_ == [Address("John Doe", "pst-test-1@aranetic.com")]
    assert record.to == [
        Address("John Doe", "pst-test-1@aranetic.com"),
        Address("Jane Doe", "pst-test-2@aranetic.com"),
    ]
    assert record.cc == [
        Address("", "pst-test-3@aranetic.com"),
        Address("", "pst-test-4@aranetic.com"),
    ]
    assert record.bcc == []
    assert record.message_id == "000001cb1620$6ddb3c40$4991b4c0$@aranetic.com"
    assert record.delivery_time == datetime(2010, 6, 27, 17, 44, 45, tzinfo=UTC)
    assert record.submit_time == datetime(2010, 6, 27, 17, 44, 43, tzinfo=UTC)
    assert record.date == datetime(2010, 6, 27, 17, 44, 43, tzinfo=UTC)
    assert record.has_transport_headers is True
    assert record.body.startswith("This email has multiple recipients.")
    assert record.warnings == []


def test_reply_in_sent_items_keeps_threading(corpus_dir: Path) -> None:
    record = _records(_read(corpus_dir, "aranetic_flags_jane_doe.pst"))["node 2097316"]

    assert record.folder == "Top of Outlook data file/Sent Items"
    assert record.subject == "RE: Needed a response, and has one"
    assert record.from_ == [Address("Jane Doe", "pst-test-2@aranetic.com")]
    assert record.to == [Address("John Doe", "pst-test-1@aranetic.com")]
    assert record.in_reply_to == "002001cb13d2$1f3a1070$5dae3150$@aranetic.com"
    assert record.date == datetime(2010, 6, 24, 19, 19, 54, tzinfo=UTC)
    assert record.delivery_time == datetime(2010, 6, 24, 19, 19, tzinfo=UTC)


def test_embedded_message_gives_its_own_record(corpus_dir: Path) -> None:
    records = _records(_read(corpus_dir, "tghanem_user1@test.lab.pst"))
    parent = records["node 2097572"]
    embedded = records["node 2097572/attachment 0"]

    assert parent.subject == "TestWithEmbeddedMessage"
    assert parent.folder == "Top of Outlook data file/FolderWithMessagesWithAttachments"
    assert parent.message_id == "000001d2e460$cc0d6930$64283b90$@test.lab"
    assert parent.delivery_time == datetime(2017, 6, 13, 16, 19, 13, tzinfo=UTC)
    assert [(a.name, a.size, a.is_message) for a in parent.attachments] == [
        ("Test1 (1.93 KB)", 1108, True)
    ]

    assert embedded.parent_item_id == "node 2097572"
    assert embedded.folder == parent.folder
    assert embedded.message_class == "IPM.Note"
    assert embedded.subject == "Test1"
    assert embedded.from_ == [Address("user1", "user1@test.lab")]
    assert embedded.to == [Address("", "user1@test.lab")]
    assert embedded.message_id == "000001d2defa$69a77c60$3cf67520$@test.lab"
    assert embedded.delivery_time == datetime(2017, 6, 6, 19, 23, 44, tzinfo=UTC)
    assert embedded.submit_time == datetime(2017, 6, 6, 19, 23, 43, tzinfo=UTC)
    assert embedded.body == "Test1\r\n\r\n"
    assert embedded.has_transport_headers is False
    assert "0x007D" in embedded.warnings[0]
    # The embedded message is the one also filed on its own in FolderWithSingleMessage.
    assert records["node 2097380"].message_id == embedded.message_id


def test_attachment_name_size_type_and_hash(corpus_dir: Path) -> None:
    record = _records(_read(corpus_dir, "tghanem_user1@test.lab.pst"))["node 2097476"]

    assert record.subject == "TestWithTextFileAttachment"
    assert record.attachments == [
        Attachment(
            name="TextFile.txt",
            size=4,
            mime_type="text/plain",
            sha256="532eaabd9574880dbf76b9b8cc00832c20a6ec113d682299550d7a6e0f345e25",
        )
    ]
    assert record.x_mailer == "Microsoft Outlook 15.0"
    assert [hop.ip for hop in record.hops] == ["127.0.0.1"]


def test_aspose_embedded_messages_and_non_mail(corpus_dir: Path) -> None:
    events = _read(corpus_dir, "aspose_Outlook.pst")
    records = _records(events)

    assert [r.subject for r in records.values() if r.parent_item_id == "node 2097540"] == [
        "message 1",
        "message 2",
    ]
    non_mail = [(e.item, e.message_class) for e in events if isinstance(e, NonMailItem)]
    assert non_mail == [
        ("node 2097860", "IPM.Appointment"),
        ("node 2097796", "IPM.Contact"),
        ("node 2097188", "IPM.Microsoft.ScheduleData.FreeBusy"),
    ]


def test_sent_item_without_transport_headers_comes_from_mapi(corpus_dir: Path) -> None:
    record = _records(_read(corpus_dir, "aspose_Outlook.pst"))["node 2097220"]

    assert record.folder == "Top of Personal Folders/Sent Items"
    assert record.has_transport_headers is False
    assert record.headers.items() == []
    assert record.subject == "message 1"
    assert record.from_ == [Address("Saqib Razzaq", "saqib.razzaq@xp.local")]
    assert record.to == [Address("'saqib.razzaq@xp.local'", "saqib.razzaq@xp.local")]
    assert record.submit_time == datetime(2011, 6, 21, 23, 46, 39, 156250, tzinfo=UTC)
    assert record.delivery_time == datetime(2011, 6, 21, 23, 46, tzinfo=UTC)
    assert record.timestamp == record.delivery_time
    assert record.thread_topic == "message 1"
    assert record.conversation_index == "01cc306d6d1eb36ba9fefb2a41f98cc693b8d249f0eb"
    assert record.body == "This is first message\r\n\r\n"


def test_outlook_97_drafts_without_headers(corpus_dir: Path) -> None:
    records = _records(_read(corpus_dir, "pst2john_97_outlook_pass12345.pst"))
    folders = Counter(r.folder for r in records.values())
    record = records["node 2124676"]

    assert folders == {
        "Top of Personal Folders/Inbox": 170,
        "Top of Personal Folders/Deleted Items": 112,
        "Top of Personal Folders/Sent Items": 7,
        "Top of Personal Folders/Outbox": 5,
    }
    assert not any(r.has_transport_headers for r in records.values())
    assert record.folder == "Top of Personal Folders/Sent Items"
    assert record.subject == "Lorem ipsum"
    assert record.subject_raw == "Lorem ipsum "
    assert record.to == [Address("nobody@yahoo.com", "nobody@yahoo.com")]
    assert record.from_ == []
    assert record.delivery_time == datetime(2012, 7, 23, 4, 0, 42, 109000, tzinfo=UTC)
    assert record.body.startswith("Lorem ipsum dolor sit amet")


def test_contacts_only_store_gives_only_non_mail(corpus_dir: Path) -> None:
    events = _read(corpus_dir, "aspose_PersonalStorage.pst")

    assert len(events) == 6
    assert all(isinstance(e, NonMailItem) and e.message_class == "IPM.Contact" for e in events)


def test_posts_are_mail(corpus_dir: Path) -> None:
    records = _records(_read(corpus_dir, "pst-exp_test_unicode.pst"))

    assert sorted((r.folder, r.message_class) for r in records.values()) == [
        ("Top of Personal Folders", "IPM.Post"),
        ("Top of Personal Folders/Folder", "IPM.Post"),
    ]


def test_sniff_recognises_pst_by_content(corpus_dir: Path, tmp_path: Path) -> None:
    assert sniff_format(corpus_dir / "pst" / "edrm_enron_sample.pst") == "pst"
    assert PstReader.sniff(b"!BDN\x00\x00") is True
    assert PstReader.sniff(b"From: a@b.c\r\n") is False


@pytest.mark.parametrize("isolated", [False, True])
def test_unopenable_file_is_one_failure(tmp_path: Path, isolated: bool) -> None:
    path = tmp_path / "broken.pst"
    path.write_bytes(b"!BDN" + b"\xff" * 600)

    events = list(PstReader(isolated=isolated).read(_evidence(path)))

    assert len(events) == 1
    failure = events[0]
    assert isinstance(failure, ItemFailure)
    assert failure.evidence_path == str(path)
    assert failure.item is None
    assert failure.reason.startswith("cannot open as PST/OST: OSError")


@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_worker_crash_keeps_items_and_reports_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, start: str
) -> None:
    """The same whether the child is forked or, as when this process runs threads,
    spawned (a fresh interpreter that must be handed the reading function)."""
    path = tmp_path / "crash.pst"
    path.write_bytes(b"!BDN")
    monkeypatch.setattr(pst, "read_pst_items", two_items_then_segfault)
    monkeypatch.setattr(isolation, "_context", lambda: multiprocessing.get_context(start))

    events = list(PstReader().read(_evidence(path)))

    assert events == [
        NonMailItem(str(path), "node 1", "IPM.Contact"),
        NonMailItem(str(path), "node 2", "IPM.Contact"),
        ItemFailure(
            str(path),
            None,
            "PST reader crashed (signal 11, SIGSEGV) after 2 items; "
            "the rest of the file was not read",
        ),
    ]


def _marked_walk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, names: list[str]
) -> tuple[Iterator[object], Path]:
    """PSTs of 100 bytes each (each its own content: a copy is read once), read by
    ``marked_items``: the walk's events, after the first file was opened and before
    anything of it is handed on, and the marks."""
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    for name in names:
        (evidence / name).write_bytes((b"!BDN" + name.encode()).ljust(100, b"\0"))
    monkeypatch.setattr(pst, "read_pst_items", marked_items)
    events = iter_evidence([evidence])
    opened = next(events)
    assert isinstance(opened, FileOpened) and opened.evidence.path == str(evidence / names[0])
    return events, tmp_path / "marks"


def _begun(marks: Path, last: str) -> list[str]:
    deadline = time.monotonic() + 10
    while not (marks / last).exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)  # time to begin one more, were it asked
    return sorted(path.name for path in marks.iterdir())


def _items_in_order(events: Iterator[object], names: list[str]) -> None:
    rest = list(events)
    items = [(Path(e.evidence_path).name, e.item) for e in rest if isinstance(e, NonMailItem)]
    assert items == [(name, f"node {i}") for name in names for i in range(3)]
    assert not [e for e in rest if isinstance(e, ItemFailure)]


def test_the_reader_child_reads_the_small_psts_ahead_while_the_caller_handles_the_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = [f"{letter}.pst" for letter in "abcdefgh"]
    events, marks = _marked_walk(tmp_path, monkeypatch, names)
    # Nothing of a.pst handed on yet, and the child has begun every file after it.
    assert _begun(marks, "h.pst") == names
    _items_in_order(events, names)


def test_files_past_the_read_ahead_size_are_opened_and_read_in_their_turn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(readers, "READ_AHEAD_BYTES", 250)
    names = [f"{letter}.pst" for letter in "abcdefgh"]
    events, marks = _marked_walk(tmp_path, monkeypatch, names)
    # a.pst, then the files after it until their sizes reach 250 bytes: b, c and d.
    assert _begun(marks, "d.pst") == names[:4]
    _items_in_order(events, names)


def _children_started(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The pids of the reader children started from now on, as they start."""
    started: list[int] = []
    real_init = isolation._Worker.__init__

    def counting_init(worker: isolation._Worker, spare: Callable[[Any], Any] | None = None) -> None:
        real_init(worker, spare)
        started.append(worker.process.pid or 0)

    monkeypatch.setattr(isolation._Worker, "__init__", counting_init)
    return started


def test_one_child_reads_a_walk_of_more_psts_than_it_may_be_asked_ahead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = _children_started(monkeypatch)
    names = [f"{index:03d}.pst" for index in range(isolation.MAX_AHEAD + 6)]
    events, _marks = _marked_walk(tmp_path, monkeypatch, names)
    _items_in_order(events, names)
    assert len(started) == 1


@pytest.mark.corpus
def test_after_a_crash_one_new_child_reads_every_later_pst(
    corpus_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The child lost with a crash had the next file asked ahead: the new child is asked
    for it first, and reads ahead again from there (not one child per file)."""
    source = corpus_dir / "pst" / "edrm_enron_sample.pst"
    names = ["a-good.pst", "b-crash.pst", "c-good.pst", "d-good.pst", "e-good.pst", "f-good.pst"]
    for name in names:
        distinct_copy(source, tmp_path / name)
    monkeypatch.setattr(pst, "read_pst_items", crash_on_names_with_crash)
    started = _children_started(monkeypatch)

    events = list(iter_evidence([tmp_path]))

    failed = [Path(e.evidence_path).name for e in events if isinstance(e, ItemFailure)]
    assert failed == ["b-crash.pst"]
    opened = [e for e in events if isinstance(e, FileOpened)]
    assert len(opened) == 6
    assert len(started) == 2


def test_a_crash_in_the_shared_reader_child_costs_that_file_only(
    corpus_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One child reads every PST of a walk; a file that crashes it is reported, and the
    files after it are read in full by a fresh child."""
    source = corpus_dir / "pst" / "pst2john_2003_no-encryption_quickquick.pst"
    for name in ("a-good.pst", "b-crash.pst", "c-good.pst"):
        distinct_copy(source, tmp_path / name)
    monkeypatch.setattr(pst, "read_pst_items", crash_on_names_with_crash)
    alone = [e for e in PstReader().read(_evidence(source)) if isinstance(e, MessageRecord)]

    events = list(iter_evidence([tmp_path]))

    by_file: dict[str, list[str]] = {}
    for event in events:
        if isinstance(event, MessageRecord):
            by_file.setdefault(Path(event.evidence_path).name, []).append(event.item_id)
    assert by_file == {
        "a-good.pst": [record.item_id for record in alone],
        "c-good.pst": [record.item_id for record in alone],
    }
    assert len(alone) > 10
    failures = [e for e in events if isinstance(e, ItemFailure)]
    assert failures == [crash_failure(tmp_path / "b-crash.pst")]


@pytest.mark.parametrize(
    ("message_class", "mail"),
    [
        ("IPM.Note", True),
        ("ipm.note.smime", True),
        ("IPM.Post", True),
        ("REPORT.IPM.Note.NDR", True),
        ("IPM.Schedule.Meeting.Request", True),
        ("IPM.Outlook.Recall", True),
        ("IPM.Notes", False),
        ("IPM.Contact", False),
        ("IPM.Appointment", False),
        ("IPM.Task", False),
        ("IPM.StickyNote", False),
        ("IPM.DistList", False),
        ("IPM.Activity", False),
        ("IPM.Microsoft.ScheduleData.FreeBusy", False),
    ],
)
def test_mail_classes(message_class: str, mail: bool) -> None:
    assert is_mail_class(message_class) is mail


def test_property_context_parser_rejects_other_data() -> None:
    with pytest.raises(ValueError, match="heap-on-node"):
        parse_property_context(b"\x00" * 64)
