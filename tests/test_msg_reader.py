"""Tests of the Outlook .msg reader on the real corpus files and on files built here."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import extract_msg
import pytest
from extract_msg.ole_writer import OleWriter

from inbec_export.model import (
    Address,
    EvidenceFile,
    ItemFailure,
    MessageRecord,
    NonMailItem,
    ReadEvent,
)
from inbec_export.readers import msg as msg_reader
from inbec_export.readers.base import hash_file, sniff_format
from inbec_export.readers.msg import MsgReader, is_non_mail_class

pytestmark = pytest.mark.corpus

CORPUS_MSG_FILES = 33


def read_path(path: Path) -> list[ReadEvent]:
    size, sha256 = hash_file(path)
    evidence = EvidenceFile(path=str(path), format="msg", size=size, sha256=sha256)
    return list(MsgReader().read(evidence))


@pytest.fixture(scope="module")
def corpus_events(corpus_dir: Path) -> dict[str, list[ReadEvent]]:
    paths = sorted((corpus_dir / "msg").glob("*.msg"))
    return {path.name: read_path(path) for path in paths}


def records(events: list[ReadEvent]) -> list[MessageRecord]:
    return [event for event in events if isinstance(event, MessageRecord)]


def top(corpus_events: dict[str, list[ReadEvent]], name: str) -> MessageRecord:
    found = [r for r in records(corpus_events[name]) if r.item_id == "message"]
    assert len(found) == 1, corpus_events[name]
    return found[0]


def at(year: int, month: int, day: int, hour: int, minute: int, second: int) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def test_every_corpus_msg_reads_without_failure(corpus_events: dict[str, list[ReadEvent]]) -> None:
    assert len(corpus_events) == CORPUS_MSG_FILES
    for name, events in corpus_events.items():
        assert events, name
        assert not [e for e in events if isinstance(e, ItemFailure)], name
        first = events[0]
        assert isinstance(first, MessageRecord | NonMailItem), name
        assert (first.item_id if isinstance(first, MessageRecord) else first.item) == "message"


def test_corpus_files_sniff_as_msg(corpus_dir: Path) -> None:
    for path in sorted((corpus_dir / "msg").glob("*.msg")):
        assert sniff_format(path) == "msg", path.name


def test_times_are_aware_utc(corpus_events: dict[str, list[ReadEvent]]) -> None:
    for events in corpus_events.values():
        for record in records(events):
            for value in (record.date, record.delivery_time, record.submit_time):
                assert value is None or value.utcoffset() is not None
                assert value is None or value.utcoffset().total_seconds() == 0  # type: ignore[union-attr]


def test_html_sample_with_attachment(corpus_events: dict[str, list[ReadEvent]]) -> None:
    record = top(corpus_events, "MSGReader_HtmlSampleEmailWithAttachment.msg")
    assert record.message_class == "IPM.Note"
    assert record.subject == "HtmlSampleEmailWithAttachment"
    assert record.from_ == [Address("Wilson, Chris", "chris.wilson@leeds.gov.uk")]
    assert record.to == [Address("Wilson, Chris", "chris.wilson@leeds.gov.uk")]
    assert record.message_id == "6BA412B7BBD2FD42861293C22F31BF8F1AECAC13@pifmbx04.Leeds.gov.uk"
    assert record.delivery_time == datetime(2017, 10, 23, 9, 5, 25, 553371, tzinfo=UTC)
    assert record.submit_time == at(2017, 10, 23, 9, 5, 24)
    assert record.has_transport_headers
    assert [(a.name, a.size, a.mime_type) for a in record.attachments] == [
        ("SampleAttachment.pdf", 169480, "application/pdf")
    ]
    assert record.attachments[0].sha256 is not None
    assert record.body.startswith("This is a sample HTML email with an attachment")
    assert record.warnings == []


def test_attachment_sha256_matches_extract_msg_data(corpus_dir: Path) -> None:
    path = corpus_dir / "msg" / "compoundfilereader_a_test_email_message.msg"
    record = records(read_path(path))[0]
    assert [(a.name, a.size, a.mime_type) for a in record.attachments] == [
        ("result.txt", 2424, "text/plain"),
        ("image001.png", 2498, "image/png"),
    ]
    with extract_msg.openMsg(str(path), strict=False) as opened:
        data = opened.attachments[1].data
    assert isinstance(data, bytes)
    assert record.attachments[1].sha256 == hashlib.sha256(data).hexdigest()
    assert record.attachments[1].sha256.startswith("9c1929b4828d")


def test_200_recipients(corpus_events: dict[str, list[ReadEvent]]) -> None:
    record = top(corpus_events, "msgreader_200_recipients.msg")
    assert record.subject == "200 recipients"
    assert len(record.to) == 200
    assert record.to[0] == Address("xmailuser1@xmailserver.test", "xmailuser1@xmailserver.test")
    assert record.to[-1].address == "xmailuser200@xmailserver.test"
    assert record.cc == [] and record.bcc == []
    assert record.from_ == []
    assert not record.has_transport_headers
    assert record.delivery_time == datetime(2021, 11, 23, 0, 24, 9, 274000, tzinfo=UTC)
    # Word's HTML head and conditional XML comments are not body text.
    assert record.body == ""


def test_many_attachments(corpus_events: dict[str, list[ReadEvent]]) -> None:
    record = top(corpus_events, "jotlmsg_many-attachments.msg")
    assert record.subject == "betreff"
    assert len(record.attachments) == 40
    assert [a.name for a in record.attachments] == [f"test{n}.txt" for n in range(40)]
    # The writer put the file name in PidTagAttachMimeTag; the type is guessed instead.
    assert {a.mime_type for a in record.attachments} == {"text/plain"}
    assert record.attachments[0].size == 17
    # The first attachment holds the 17 bytes "this is content 0".
    assert record.attachments[0].sha256 == hashlib.sha256(b"this is content 0").hexdigest()
    assert record.attachments[0].sha256 == (
        "089e601551a00baa8a9c5215e8bdfa7f3fbe9c0a83c277842a6152e2c3f2b3b3"
    )
    assert record.to == [Address("john@doe.com", "john@doe.com")]
    assert record.delivery_time is None and record.submit_time is None


@pytest.mark.parametrize(
    ("name", "message_class"),
    [
        ("hughbe_Contact_Group.msg", "IPM.DistList"),
        ("hughbe_Journal_Entry.msg", "IPM.Activity"),
        ("hughbe_Meeting.msg", "IPM.Appointment"),
        ("hughbe_Simple_Task.msg", "IPM.Task"),
        ("msgreader_A_schedule.msg", "IPM.Appointment"),
        ("msgreader_contactUnicode.msg", "IPM.Contact"),
    ],
)
def test_non_mail_items(
    corpus_events: dict[str, list[ReadEvent]], name: str, message_class: str
) -> None:
    events = corpus_events[name]
    assert len(events) == 1
    assert isinstance(events[0], NonMailItem)
    assert events[0].message_class == message_class
    assert events[0].item == "message"


def test_post_is_mail(corpus_events: dict[str, list[ReadEvent]]) -> None:
    record = top(corpus_events, "hughbe_discussion.msg")
    assert record.message_class == "IPM.Post"
    assert record.subject == "Discussion"
    assert record.from_ == [Address("hughbellars@gmail.com", "hughbellars@gmail.com")]
    assert record.to == []
    assert record.body == "Hi"


def test_class_with_trailing_nul_and_ansi_strings(
    corpus_events: dict[str, list[ReadEvent]],
) -> None:
    record = top(corpus_events, "msgconvert_charset.msg")
    assert record.message_class == "IPM.Note"
    assert record.subject == "PST Export - Embedded Email Test"
    assert record.from_ == [Address("Joseph Q Bloggs", "joebloggs@example.org")]
    assert record.message_id == (
        "ME2PR01MB44198426BA1B46A2296E6727E5950@ME2PR01MB4419.ausprd01.prod.outlook.com"
    )
    # No MAPI delivery time: the topmost Received header gives it.
    assert record.delivery_time == at(2019, 10, 9, 5, 55, 11)
    assert record.submit_time == at(2019, 10, 9, 5, 55, 10)
    # Byte 0x85 of the ANSI body is cp1252 HORIZONTAL ELLIPSIS, not a C1 control.
    assert record.body == "This email contains an email… Email-ception!!!"


def test_strange_date(corpus_events: dict[str, list[ReadEvent]]) -> None:
    record = top(corpus_events, "msg-extractor_strangeDate.msg")
    assert record.subject == "MSG Test File"
    assert record.date is None
    assert record.delivery_time is None
    assert record.submit_time is None
    assert record.timestamp is None
    assert record.to == [Address("time2talk@online-convert.com", "time2talk@online-convert.com")]
    assert record.body.startswith("MSG test file\r\nPurpose: Provide example of this file type")


def test_unsent_message_from_mapi(corpus_events: dict[str, list[ReadEvent]]) -> None:
    record = top(corpus_events, "msgconvert_plain_unsent.msg")
    assert not record.has_transport_headers
    assert record.headers.items() == []
    assert record.subject == "Test for MSGConvert -- plain text"
    assert record.from_ == [Address("Test User", "")]
    assert record.to == [Address("Someone Else", "someone@somewhere.com")]
    assert record.delivery_time == datetime(2007, 2, 26, 22, 55, 18, 515000, tzinfo=UTC)
    assert record.submit_time is None
    assert record.body == "This is a test\r\nThe body is in plain text"


def test_headers_and_mapi_complement(corpus_events: dict[str, list[ReadEvent]]) -> None:
    record = top(corpus_events, "msgparser_html_replyto_attachment_embedded_image.msg")
    assert record.has_transport_headers
    assert record.from_ == [Address("lollypop", "b.bottema@projectnibble.org")]
    assert record.sender == [Address("Benny Bottema", "b.bottema@gmail.com")]
    assert record.reply_to == [Address("lollypop-replyto", "lo.pop.replyto@somemail.com")]
    # The To header names the recipient "C.Cane"; the recipient table says "Bottema, Benny".
    assert record.to == [Address("C.Cane", "benny.bottema@aegon.nl")]
    assert record.hops
    assert record.thread_topic == "hey"
    assert record.conversation_index == "0101d295a1454f3b018903f10a4692fd917acb95d80b"
    assert [a.name for a in record.attachments] == ["thumbsup", "dresscode.txt", "location.txt"]


def test_reply_to_from_mapi_entries(corpus_dir: Path) -> None:
    path = corpus_dir / "msg" / "msgparser_html_replyto_attachment_embedded_image.msg"
    warnings: list[str] = []
    with extract_msg.openMsg(str(path), strict=False) as opened:
        found = msg_reader._reply_to(opened, warnings)
    assert found == [Address("lollypop-replyto", "lo.pop.replyto@somemail.com")]
    assert warnings == []


def test_recipient_types(corpus_events: dict[str, list[ReadEvent]]) -> None:
    record = top(corpus_events, "outlook-message-parser_simple_reply_with_CC.msg")
    assert record.subject == "Re: Sent by CV Contact Form"
    assert record.to == [Address("David Johnston", "davidjono555@gmail.com")]
    assert [a.address for a in record.cc] == ["b.bottema@projectnibble.org", "b.bottema@gmail.com"]
    assert record.delivery_time == at(2019, 12, 18, 10, 30, 50)
    assert record.submit_time == at(2019, 12, 18, 10, 30, 37)


def test_nested_msg_gives_child_record(corpus_events: dict[str, list[ReadEvent]]) -> None:
    events = corpus_events["msgparser_nested_simple_mail.msg"]
    parent, child = records(events)
    assert parent.item_id == "message" and parent.parent_item_id is None
    assert child.item_id == "message/attachment 0"
    assert child.parent_item_id == "message"
    assert child.subject == "outlookmsg2html Testmail"
    assert child.message_id == (
        "DBXPR05MB2545FA9C9506E7A1D7D3835F3940@DBXPR05MB254.eurprd05.prod.outlook.com"
    )
    assert child.date == at(2016, 4, 11, 9, 14, 29)
    (entry,) = parent.attachments
    assert entry.is_message and entry.sha256 is None
    assert entry.mime_type == "application/vnd.ms-outlook"


def test_msg_in_msg(corpus_events: dict[str, list[ReadEvent]]) -> None:
    parent, child = records(corpus_events["msgreader_msgInMsg.msg"])
    assert parent.subject == "I have attachments!"
    assert [a.name for a in parent.attachments] == [
        "Microsoft Outlook テスト メッセージ",
        "green.png",
    ]
    assert child.parent_item_id == "message"
    assert child.item_id == "message/attachment 0"
    assert child.subject == "Microsoft Outlook テスト メッセージ"
    assert child.from_ == [Address("Microsoft Outlook", "xmailuser@xmailserver.test")]


def test_attached_eml_received(corpus_events: dict[str, list[ReadEvent]]) -> None:
    parent, child = records(corpus_events["msgreader_attach_eml_received.msg"])
    assert parent.subject == "Attach sample.eml"
    assert parent.attachments[0].name == "sample.eml (555 バイト)"
    assert child.parent_item_id == "message"
    assert child.subject == "sample"
    assert child.from_ == [Address("hmail", "hmailuser@hmailserver.test")]
    assert child.message_id == "4b8ce858-d06e-487e-a062-b8d7efb4d9d9@hmailserver.test"


def test_signed_message_lists_signed_parts(corpus_events: dict[str, list[ReadEvent]]) -> None:
    record = top(corpus_events, "outlook-message-parser_SMIME_signed.msg")
    assert record.message_class == "IPM.Note.SMIME.MultipartSigned"
    assert [(a.name, a.mime_type) for a in record.attachments] == [
        ("smime.p7s", "application/pkcs7-signature"),
        ("03-07-2005 errata SharnErrata.pdf", "application/pdf"),
        ("module_architecture.png", "image/png"),
    ]
    assert record.body.startswith("This is an encrypted message, with one embedded image")


def test_embed_depth_is_bounded(corpus_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(msg_reader, "MAX_EMBED_DEPTH", 0)
    events = read_path(corpus_dir / "msg" / "msgparser_nested_simple_mail.msg")
    parent, failure = events
    assert isinstance(parent, MessageRecord)
    assert parent.warnings == ["1 embedded message(s) nested deeper than 0; not read"]
    assert failure == ItemFailure(
        str(corpus_dir / "msg" / "msgparser_nested_simple_mail.msg"),
        "message/attachment 0",
        "embedded message nested deeper than 0 levels; not read",
    )


class _FailingProperties:
    """An opened message whose subject and HTML body raise, as some real files do."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def getStringStream(self, name: str, prefix: bool = True) -> str | None:
        if name == "__substg1.0_0037":
            raise UnicodeDecodeError("utf-16-le", b"\xff", 0, 1, "truncated data")
        return self._inner.getStringStream(name, prefix)  # type: ignore[no-any-return]

    @property
    def body(self) -> None:
        return None

    @property
    def htmlBody(self) -> bytes:
        raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")


def test_bad_property_becomes_warning(corpus_dir: Path) -> None:
    path = corpus_dir / "msg" / "msgconvert_plain_jpeg_attached.msg"
    evidence = EvidenceFile(str(path), "msg", 0, "0" * 64)
    with extract_msg.openMsg(str(path), strict=False, delayAttachments=True) as opened:
        events = list(
            msg_reader._ItemReader(evidence).read(_FailingProperties(opened), "message", None, 0)
        )
    (record,) = events
    assert isinstance(record, MessageRecord)
    assert record.warnings == [
        "subject unreadable: UnicodeDecodeError: 'utf-16-le' codec can't decode byte 0xff in "
        "position 0: truncated data",
        "HTML body unreadable: UnicodeDecodeError: 'utf-8' codec can't decode byte 0xff in "
        "position 0: invalid start byte",
    ]
    # The Subject header still gives the subject; everything else is read as usual.
    assert record.subject == "test"
    assert record.from_ == [Address("Matijs van Zuijlen", "matijs.van.zuijlen@xs4all.nl")]
    assert [a.name for a in record.attachments] == ["test.jpg"]


def test_ole_file_that_is_not_a_message(tmp_path: Path) -> None:
    writer = OleWriter()
    writer.addEntry("WordDocument", b"\xec\xa5" + b"\x00" * 510)
    writer.addEntry("1Table", b"\x00" * 64)
    path = tmp_path / "letter.doc"
    writer.write(str(path))
    assert sniff_format(path) == "msg"
    assert read_path(path) == [
        ItemFailure(
            str(path), None, "OLE file but not an Outlook message (no MAPI property streams)"
        )
    ]


def test_damaged_file_is_one_failure(tmp_path: Path) -> None:
    path = tmp_path / "damaged.msg"
    path.write_bytes(msg_reader.OLE_MAGIC + b"\x00" * 100)
    (failure,) = read_path(path)
    assert isinstance(failure, ItemFailure)
    assert failure.item is None
    assert failure.reason == "not an OLE compound file: not an OLE2 structured storage file"


def test_truncated_copy_does_not_raise(corpus_dir: Path, tmp_path: Path) -> None:
    data = (corpus_dir / "msg" / "msgreader_msgInMsg.msg").read_bytes()
    path = tmp_path / "truncated.msg"
    path.write_bytes(data[: len(data) // 2])
    events = read_path(path)
    assert events
    assert all(isinstance(e, MessageRecord | ItemFailure | NonMailItem) for e in events)


def test_sniff() -> None:
    assert MsgReader.sniff(msg_reader.OLE_MAGIC + b"\x00" * 504)
    assert not MsgReader.sniff(b"!BDN" + b"\x00" * 508)
    assert not MsgReader.sniff(b"From: a@example.org\r\nSubject: x\r\n\r\nbody")
    assert not MsgReader.sniff(b"")


@pytest.mark.parametrize(
    ("message_class", "non_mail"),
    [
        ("IPM.Note", False),
        ("IPM.Note.SMIME.MultipartSigned", False),
        ("REPORT.IPM.Note.NDR", False),
        ("IPM.Post", False),
        ("IPM.Schedule.Meeting.Request", False),
        ("IPM.TaskRequest.Accept", False),
        ("IPM.Task", True),
        ("ipm.contact", True),
        ("IPM.Contact.CustomForm", True),
        ("IPM.DistList", True),
        ("IPM.StickyNote", True),
        ("IPM.OLE.CLASS.{00061055-0000-0000-C000-000000000046}", True),
        ("IPM.Appointmentish", False),
    ],
)
def test_non_mail_classes(message_class: str, non_mail: bool) -> None:
    assert is_non_mail_class(message_class) is non_mail


class _DataAttachment:
    def __init__(self, name: str, mimetype: str | None, data: bytes) -> None:
        self.longFilename = name
        self.mimetype = mimetype
        self.data = data


def test_attached_rfc822_bytes_become_a_record() -> None:
    raw = (
        b"From: Payroll <payroll@example.org>\r\nTo: staff@example.org\r\n"
        b"Subject: Updated bank details\r\nMessage-ID: <m1@example.org>\r\n\r\nSee attached.\r\n"
    )
    warnings: list[str] = []
    entry, child = msg_reader._attachment(_DataAttachment("fwd.eml", None, raw), "a", warnings)
    assert entry.is_message and entry.mime_type == "message/rfc822"
    assert entry.sha256 == hashlib.sha256(raw).hexdigest()
    assert child == raw
    evidence = EvidenceFile("case.msg", "msg", 0, "0" * 64)
    record = msg_reader._ItemReader(evidence)._embedded_eml(raw, "message/attachment 0", "message")
    assert isinstance(record, MessageRecord)
    assert record.parent_item_id == "message"
    assert record.subject == "Updated bank details"
    assert record.from_ == [Address("Payroll", "payroll@example.org")]

    text_entry, no_child = msg_reader._attachment(
        _DataAttachment("notes.txt", "text/plain", b"not a message"), "b", warnings
    )
    assert not text_entry.is_message and no_child is None
    assert warnings == []
