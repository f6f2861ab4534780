"""Reader for Outlook PST and OST files with libpff (``pypff``), in a worker process.

Every folder of the store is walked. Each item's MAPI properties are read once, as raw
values, and decoded here ([MS-OXPROPS] tags, [MS-OXCDATA] types), which avoids libpff's
own date conversion, a known crash site. Transport headers, when present, are parsed
with :mod:`~inbec_export.readers.rfc822`; MAPI properties fill in what headers lack (and
stand alone for sent items, drafts and internal Exchange mail, which have none).

Mail is what a person sends or receives: ``IPM.Note*``, ``IPM.Post*``, ``REPORT.*``
(non-delivery and read reports show sending attempts), ``IPM.Schedule.Meeting.*``
(invitations travel as mail and are a phishing vector) and ``IPM.Outlook.Recall``.
Contacts, appointments, tasks, notes, distribution lists, journal entries and every
other class become :class:`~inbec_export.model.NonMailItem`, counted and not read.

libpff can crash the interpreter on some files, so :class:`PstReader` reads each file in
a child process (:mod:`~inbec_export.readers.isolation`; during an evidence walk one
child reads every PST/OST in turn); a crash costs the rest of that file, is reported as
one :class:`~inbec_export.model.ItemFailure`, and the items read before it are kept; the
next file gets a fresh child. The child does only what needs libpff (properties,
recipients and attachment data, read as raw values) and sends each mail item as a
:class:`PstItem`; this process decodes its text and parses its headers
(:func:`complete_items`), so the two halves of the work run on two cores. A child
that sends no item for a while (libpff looping on a damaged file) is killed and
reported the same way, as stalled. The wait is
:data:`~inbec_export.readers.isolation.STALL_SECONDS` (300 s) unless the environment
variable ``INBEC_PST_STALL_SECONDS`` gives another positive number of seconds; raise it
for evidence on slow storage, where one large attachment can take minutes to read.

Limitations:

- libpff-python does not expose the message inside an embedded-message attachment. Its
  property context is parsed here from the attachment's bytes ([MS-PST] 2.3), which
  gives class, subject, sender, times, Message-ID and small bodies and headers; values
  stored in sub-nodes (large bodies, long header blocks), its recipient table and its
  own attachments cannot be read. Its To/Cc/Bcc then come from the display-name
  properties, and each record says what was missing in ``warnings``. Because nested
  attachments are unreadable, embedded messages are found one level deep only.
- A body stored only as compressed RTF is not converted to text (a warning says so).
- Associated (hidden) folder contents and deleted items kept outside folders (orphans)
  are not read.
"""

from __future__ import annotations

import base64
import codecs
import functools
import hashlib
import itertools
import logging
import math
import os
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import IO, Any, ClassVar

from inbec_export.model import (
    BODY_CAP_CHARS,
    Address,
    Attachment,
    EvidenceFile,
    ItemFailure,
    MessageRecord,
    NonMailItem,
    ReadEvent,
)
from inbec_export.readers import headers as h
from inbec_export.readers.base import Reader, describe, register
from inbec_export.readers.isolation import (
    STALL_SECONDS,
    WorkerFailure,
    asked_ahead,
    iter_in_worker,
    read_ahead,
)
from inbec_export.readers.rfc822 import (
    MAX_ATTACHMENTS,
    apply_headers,
    html_to_text,
    parse_header_block,
    set_body,
)

logger = logging.getLogger(__name__)

#: Chunk read from an attachment while hashing it, in bytes.
ATTACHMENT_CHUNK_BYTES = 1024 * 1024

#: Largest attachment hashed, in bytes; a larger one is listed with its size only.
MAX_HASHED_ATTACHMENT_BYTES = 1024 * 1024 * 1024

#: Largest embedded message read into memory to parse, in bytes.
MAX_EMBEDDED_BYTES = 64 * 1024 * 1024

#: Longest HTML body converted to text, in bytes (the text is capped afterwards anyway).
MAX_HTML_BYTES = 4 * 1024 * 1024

#: Deepest folder nesting walked; deeper folders are reported, not read.
MAX_FOLDER_DEPTH = 64

#: Most folders walked in one file (a damaged file can loop its folder tree).
MAX_FOLDERS = 100_000

#: Environment variable overriding the worker's stall timeout, in seconds.
STALL_SECONDS_ENV = "INBEC_PST_STALL_SECONDS"

# MAPI property tags ([MS-OXPROPS]).
PR_MESSAGE_CLASS = 0x001A
PR_SUBJECT = 0x0037
PR_CLIENT_SUBMIT_TIME = 0x0039
PR_SENT_REPRESENTING_NAME = 0x0042
PR_SENT_REPRESENTING_ADDRTYPE = 0x0064
PR_SENT_REPRESENTING_EMAIL = 0x0065
PR_CONVERSATION_TOPIC = 0x0070
PR_CONVERSATION_INDEX = 0x0071
PR_TRANSPORT_MESSAGE_HEADERS = 0x007D
PR_RECIPIENT_TYPE = 0x0C15
PR_SENDER_NAME = 0x0C1A
PR_SENDER_ADDRTYPE = 0x0C1E
PR_SENDER_EMAIL = 0x0C1F
PR_DISPLAY_BCC = 0x0E02
PR_DISPLAY_CC = 0x0E03
PR_DISPLAY_TO = 0x0E04
PR_MESSAGE_DELIVERY_TIME = 0x0E06
PR_ATTACH_SIZE = 0x0E20
PR_BODY = 0x1000
PR_RTF_COMPRESSED = 0x1009
PR_HTML = 0x1013
PR_INTERNET_MESSAGE_ID = 0x1035
PR_INTERNET_REFERENCES = 0x1039
PR_IN_REPLY_TO_ID = 0x1042
PR_DISPLAY_NAME = 0x3001
PR_ADDRTYPE = 0x3002
PR_EMAIL_ADDRESS = 0x3003
PR_ATTACH_FILENAME = 0x3704
PR_ATTACH_METHOD = 0x3705
PR_ATTACH_LONG_FILENAME = 0x3707
PR_ATTACH_MIME_TAG = 0x370E
PR_SMTP_ADDRESS = 0x39FE
PR_INTERNET_CPID = 0x3FDE
PR_MESSAGE_CODEPAGE = 0x3FFD
PR_SENDER_SMTP_ADDRESS = 0x5D01
PR_SENT_REPRESENTING_SMTP_ADDRESS = 0x5D02

#: Properties read from a message; every other entry is skipped without reading its value.
MESSAGE_TAGS = frozenset(
    {
        PR_MESSAGE_CLASS,
        PR_SUBJECT,
        PR_CLIENT_SUBMIT_TIME,
        PR_SENT_REPRESENTING_NAME,
        PR_SENT_REPRESENTING_ADDRTYPE,
        PR_SENT_REPRESENTING_EMAIL,
        PR_CONVERSATION_TOPIC,
        PR_CONVERSATION_INDEX,
        PR_TRANSPORT_MESSAGE_HEADERS,
        PR_SENDER_NAME,
        PR_SENDER_ADDRTYPE,
        PR_SENDER_EMAIL,
        PR_DISPLAY_BCC,
        PR_DISPLAY_CC,
        PR_DISPLAY_TO,
        PR_MESSAGE_DELIVERY_TIME,
        PR_BODY,
        PR_HTML,
        PR_INTERNET_MESSAGE_ID,
        PR_INTERNET_REFERENCES,
        PR_IN_REPLY_TO_ID,
        PR_INTERNET_CPID,
        PR_MESSAGE_CODEPAGE,
        PR_SENDER_SMTP_ADDRESS,
        PR_SENT_REPRESENTING_SMTP_ADDRESS,
    }
)
RECIPIENT_TAGS = frozenset(
    {PR_DISPLAY_NAME, PR_ADDRTYPE, PR_EMAIL_ADDRESS, PR_SMTP_ADDRESS, PR_RECIPIENT_TYPE}
)
ATTACHMENT_TAGS = frozenset(
    {
        PR_DISPLAY_NAME,
        PR_ATTACH_FILENAME,
        PR_ATTACH_LONG_FILENAME,
        PR_ATTACH_METHOD,
        PR_ATTACH_MIME_TAG,
    }
)

#: PidTagAttachMethod value of an attachment that is itself a message ([MS-OXCMSG]).
ATTACH_EMBEDDED_MSG = 5

# Property value types ([MS-OXCDATA] 2.11.1).
PT_SHORT = 0x0002
PT_LONG = 0x0003
PT_BOOLEAN = 0x000B
PT_LONGLONG = 0x0014
PT_STRING8 = 0x001E
PT_UNICODE = 0x001F
PT_SYSTIME = 0x0040
PT_BINARY = 0x0102

#: Types whose value sits in the 4-byte slot of a property context record ([MS-PST] 2.3.3.3).
_INLINE_TYPES = {PT_SHORT: 2, PT_LONG: 4, PT_BOOLEAN: 1, 0x0004: 4, 0x000A: 4}

#: Classes read as mail (compared upper-case; a class matches itself and its sub-classes).
MAIL_CLASSES: tuple[str, ...] = (
    "IPM.NOTE",
    "IPM.POST",
    "REPORT",
    "IPM.SCHEDULE.MEETING",
    "IPM.OUTLOOK.RECALL",
)

#: Windows code pages whose Python codec name is not ``cp<number>``.
_CODEPAGES = {
    65001: "utf-8",
    65000: "utf-7",
    1200: "utf-16-le",
    1201: "utf-16-be",
    20127: "ascii",
    20866: "koi8-r",
    21866: "koi8-u",
    28591: "iso8859-1",
    28592: "iso8859-2",
    28593: "iso8859-3",
    28594: "iso8859-4",
    28595: "iso8859-5",
    28596: "iso8859-6",
    28597: "iso8859-7",
    28598: "iso8859-8",
    28599: "iso8859-9",
    28605: "iso8859-15",
    50220: "iso2022-jp",
    50221: "iso2022-jp",
    50222: "iso2022-jp",
    51932: "euc-jp",
    51936: "gb2312",
    51949: "euc-kr",
    52936: "hz",
    54936: "gb18030",
}

_FILETIME_EPOCH = datetime(1601, 1, 1, tzinfo=UTC)

#: Raw MAPI properties: tag -> (value type, value bytes or None when unreadable).
PropertyMap = dict[int, tuple[int, bytes | None]]


def is_mail_class(message_class: str) -> bool:
    """True if ``message_class`` is read as mail (see the module docstring)."""
    upper = message_class.upper()
    return any(upper == base or upper.startswith(base + ".") for base in MAIL_CLASSES)


@register
class PstReader(Reader):
    """Outlook personal (PST) and offline (OST) stores; both start with ``!BDN``."""

    format = "pst"
    priority = 10

    #: Name used in the failure reported when the worker process dies.
    worker_name: ClassVar[str | None] = "PST reader"

    def __init__(self, isolated: bool = True, stall_seconds: float | None = None) -> None:
        """Set how files are read.

        Args:
            isolated: read each file in a worker process (see the module docstring).
            stall_seconds: seconds without an item before the worker is killed as hung;
                None takes ``INBEC_PST_STALL_SECONDS``, else ``STALL_SECONDS``.
        """
        self.isolated = isolated
        self.stall_seconds = (
            stall_seconds if stall_seconds is not None else stall_seconds_from_env()
        )

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        return head.startswith(b"!BDN")

    def read(self, evidence: EvidenceFile) -> Iterator[ReadEvent]:
        if not self.isolated:
            yield from read_pst(evidence)
            return
        # ``read_pst_items`` is looked up here and handed to the child, so that a child
        # started with ``spawn`` runs the same function as this process would. The child
        # reads libpff; this process decodes what it sends (``complete_items``).
        events = iter_in_worker(read_pst_items, evidence, stall_seconds=self.stall_seconds)
        yield from complete_items(self._failures(evidence, events))

    def in_worker(self) -> PstReader:
        return PstReader(isolated=False, stall_seconds=self.stall_seconds)

    def read_ahead(self, evidence: EvidenceFile) -> None:
        # The shared child reads this file as soon as it is done with the one before.
        if self.isolated:
            read_ahead(read_pst_items, evidence)

    def asked_ahead(self, evidence: EvidenceFile) -> bool:
        return not self.isolated or asked_ahead(read_pst_items, evidence)

    def _failures(
        self, evidence: EvidenceFile, events: Iterable[PstItem | ReadEvent | WorkerFailure]
    ) -> Iterator[PstItem | ReadEvent]:
        """``events`` with the child's own failure told as a failure of the file."""
        for event in events:
            if isinstance(event, WorkerFailure):
                name = self.worker_name or "reader"
                yield ItemFailure(evidence.path, None, event.describe(name))
            else:
                yield event


def stall_seconds_from_env() -> float:
    """The stall timeout from ``INBEC_PST_STALL_SECONDS``, or the default."""
    return _stall_seconds_from(os.environ.get(STALL_SECONDS_ENV, "").strip())


@functools.lru_cache(maxsize=8)
def _stall_seconds_from(text: str) -> float:
    """The stall timeout that ``text`` gives (a bad value is warned about once)."""
    if not text:
        return STALL_SECONDS
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (seconds > 0 and math.isfinite(seconds)):
        logger.warning(
            "%s=%r is not a positive number of seconds; using %g",
            STALL_SECONDS_ENV,
            text,
            STALL_SECONDS,
        )
        return STALL_SECONDS
    return seconds


def read_pst(evidence: EvidenceFile) -> Iterator[ReadEvent]:
    """Yield the records, non-mail items and failures of one PST/OST file, in this process.

    Args:
        evidence: the file, already hashed.

    Returns:
        An iterator of events in folder order; a file that cannot be opened gives one
        :class:`ItemFailure` with ``item=None``.
    """
    return complete_items(read_pst_items(evidence))


def read_pst_items(evidence: EvidenceFile) -> Iterator[PstItem | ReadEvent]:
    """What :func:`read_pst` yields, with each mail item's own record left as a
    :class:`PstItem`: the part of the work that needs libpff (the reading child's)."""
    import pypff  # imported here so that a missing binding fails one file, not the import

    store = pypff.file()
    handle: IO[bytes] | None = None
    try:
        if _utf8_name(evidence.path):
            store.open(evidence.path, "r")  # read-only: evidence is never written
        else:
            # libpff takes names as UTF-8; a name in another encoding is opened here.
            handle = open(evidence.path, "rb")  # noqa: SIM115 (closed below)
            store.open_file_object(handle, "r")
    except Exception as exc:
        if handle is not None:
            handle.close()
        reason = f"cannot open as PST/OST: {describe(exc)}"
        yield ItemFailure(evidence.path, None, reason)
        return
    try:
        context = _Context(evidence, _file_codepage(store))
        yield from _walk(context, store)
    finally:
        try:
            store.close()
        except Exception as exc:
            logger.debug("%s: close failed: %s", evidence.path, exc)
        if handle is not None:
            handle.close()


def _utf8_name(path: str) -> bool:
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:  # bytes of another encoding, kept as surrogates
        return False
    return True


@dataclass(slots=True)
class _Context:
    """What every item of one file needs: the evidence and the store's 8-bit code page."""

    evidence: EvidenceFile
    codepage: str
    folders: int = 0
    seen_folders: set[int] = field(default_factory=set)


def _file_codepage(store: Any) -> str:
    try:
        value = store.ascii_codepage
        name = value.decode("ascii") if isinstance(value, bytes) else str(value)
        codecs.lookup(name)
        return name
    except Exception:
        return "cp1252"


def _walk(context: _Context, store: Any) -> Iterator[PstItem | ReadEvent]:
    path = context.evidence.path
    try:
        root = store.get_root_folder()
    except Exception as exc:
        yield _failure(path, None, f"no readable root folder: {describe(exc)}")
        return
    # Depth-first with an explicit stack: the folder order is the file's, and deep or
    # looping trees cannot exhaust the interpreter stack.
    stack: list[tuple[Any, str, int]] = [(root, "", 0)]
    while stack:
        folder, folder_path, depth = stack.pop()
        context.folders += 1
        if context.folders > MAX_FOLDERS:
            yield _failure(path, None, f"more than {MAX_FOLDERS} folders; the rest not read")
            return
        yield from _read_folder(context, folder, folder_path)
        if depth >= MAX_FOLDER_DEPTH:
            yield _failure(
                path, folder_path, f"folders nested deeper than {MAX_FOLDER_DEPTH}; not read"
            )
            continue
        children: list[tuple[Any, str]] = []
        for entry in _sub_folders(context, folder, folder_path):
            if isinstance(entry, ItemFailure):
                yield entry
            else:
                children.append(entry)
        for child, child_path in reversed(children):
            stack.append((child, child_path, depth + 1))


def _sub_folders(
    context: _Context, folder: Any, folder_path: str
) -> Iterator[tuple[Any, str] | ItemFailure]:
    """The sub-folders of ``folder`` with their paths; an unreadable one is a failure (its
    messages are lost), a loop back to a folder already read is skipped with a warning."""
    path = context.evidence.path
    where = folder_path or "/"
    try:
        count = folder.get_number_of_sub_folders()
    except Exception as exc:
        yield _failure(path, where, f"sub-folders unreadable: {describe(exc)}")
        return
    for index in range(count):
        try:
            child = folder.get_sub_folder(index)
            identifier = _identifier(child)
            if identifier is not None:
                if identifier in context.seen_folders:
                    logger.warning("%s [%s]: folder loop at node %s", path, where, identifier)
                    continue
                context.seen_folders.add(identifier)
            name = _folder_name(child, identifier)
        except Exception as exc:
            yield _failure(path, where, f"sub-folder {index} unreadable: {describe(exc)}")
            continue
        yield child, f"{folder_path}/{name}" if folder_path else name


def _folder_name(folder: Any, identifier: int | None) -> str:
    try:
        name = folder.get_name()
    except Exception:
        name = None
    if not name:
        return f"folder {identifier}"
    return str(name).replace("\x00", "")


def _identifier(item: Any) -> int | None:
    try:
        return int(item.get_identifier())
    except Exception:
        return None


def _failure(path: str, item: str | None, reason: str) -> ItemFailure:
    return ItemFailure(path, item, reason)


def _read_folder(context: _Context, folder: Any, folder_path: str) -> Iterator[PstItem | ReadEvent]:
    path = context.evidence.path
    try:
        count = folder.get_number_of_sub_messages()
    except Exception as exc:
        yield _failure(path, folder_path, f"items unreadable: {describe(exc)}")
        return
    for index in range(count):
        item_id = f"{folder_path}/item {index}"
        try:
            item = folder.get_sub_message(index)
            identifier = _identifier(item)
            if identifier is not None:
                item_id = f"node {identifier}"
            events = list(_read_item(context, item, item_id, folder_path))
        except Exception as exc:
            where = folder_path or "the root folder"
            yield _failure(path, item_id, f"unreadable item in {where}: {describe(exc)}")
            continue
        yield from events


def _read_item(
    context: _Context, item: Any, item_id: str, folder_path: str
) -> Iterator[PstItem | ReadEvent]:
    """Yield one item (a :class:`PstItem` to complete) and the events of its embedded
    messages, or its NonMailItem."""
    warnings: list[str] = []
    props = _properties(item, MESSAGE_TAGS, warnings)
    codepage = _codepage(props, context.codepage)
    message_class = _text(props, PR_MESSAGE_CLASS, codepage, warnings) or ""
    if message_class and not is_mail_class(message_class):
        yield NonMailItem(context.evidence.path, item_id, message_class)
        return
    if not message_class:
        warnings.append("no message class; read as mail")
        message_class = "IPM.Note"

    evidence = context.evidence
    record = _new_record(evidence.path, evidence.sha256, item_id, folder_path, message_class)
    record.warnings.extend(warnings)
    recipients = _read_recipients(item)
    attachment_warnings: list[str] = []
    embedded = _fill_attachments(context, record, item, folder_path, attachment_warnings)
    yield PstItem(record, codepage, props, recipients, attachment_warnings, folder_path)
    yield from embedded


@dataclass(slots=True)
class PstItem:
    """One mail item as the reading process leaves it: its properties and recipients read
    from libpff but not decoded, its attachments listed and hashed. :meth:`complete`
    makes the record. Reading libpff is the slow half of a PST, so the reading child
    sends these and the process that receives them decodes text and parses headers, on
    the other core.
    """

    record: MessageRecord
    codepage: str
    props: PropertyMap
    recipients: list[PropertyMap | str]
    attachment_warnings: list[str]
    folder_path: str

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # The record holds only what the reading sets (``_new_record``, then its warnings
        # and attachments): those cross the pipe, not the forty fields of a record (a
        # third less pickling).
        record = self.record
        head = (record.evidence_path, record.evidence_sha256, record.item_id)
        tail = (record.message_class, record.warnings, record.attachments)
        rest = (self.codepage, self.props, self.recipients, self.attachment_warnings)
        return _unpickle_item, (*head, *tail, *rest, self.folder_path)

    def complete(self) -> MessageRecord:
        """The record, decoded: warnings in the order of reading (item, properties,
        recipients, headers, attachments). Call once."""
        record, codepage = self.record, self.codepage
        _fill_from_properties(record, self.props, codepage)
        _fill_recipients(record, self.recipients, codepage)
        _fill_headers(record, self.props, codepage)
        record.warnings.extend(self.attachment_warnings)
        return record


def _unpickle_item(
    evidence_path: str,
    evidence_sha256: str,
    item_id: str,
    message_class: str,
    warnings: list[str],
    attachments: list[Attachment],
    codepage: str,
    props: PropertyMap,
    recipients: list[PropertyMap | str],
    attachment_warnings: list[str],
    folder_path: str,
) -> PstItem:
    record = _new_record(evidence_path, evidence_sha256, item_id, folder_path, message_class)
    record.warnings, record.attachments = warnings, attachments
    return PstItem(record, codepage, props, recipients, attachment_warnings, folder_path)


def complete_items(events: Iterable[PstItem | ReadEvent]) -> Iterator[ReadEvent]:
    """``events`` with each :class:`PstItem` replaced by its record; an item that cannot
    be decoded becomes the failure its reading would have given."""
    for event in events:
        if not isinstance(event, PstItem):
            yield event
            continue
        try:
            yield event.complete()
        except Exception as exc:
            record = event.record
            where = event.folder_path or "the root folder"
            yield _failure(
                record.evidence_path,
                record.item_id,
                f"unreadable item in {where}: {describe(exc)}",
            )


@dataclass(frozen=True, slots=True)
class FinishInChild:
    """The reading child's spare work (see :func:`~inbec_export.readers.isolation.
    worker_session`): while the analysis process is behind, an item is completed where
    it is read, then finished as a record read in the analysis process would be
    (``finish``: bounded, and prepared when the caller prepares records), and so is an
    embedded message's record. Whichever process does it, the result is the same; other
    events are left as they are."""

    finish: Callable[[MessageRecord], object]

    def __call__(self, event: PstItem | ReadEvent) -> object:
        if isinstance(event, PstItem):
            event = next(complete_items([event]))
        return self.finish(event) if isinstance(event, MessageRecord) else event


def _new_record(
    evidence_path: str,
    evidence_sha256: str,
    item_id: str,
    folder_path: str,
    message_class: str,
    parent: str | None = None,
) -> MessageRecord:
    return MessageRecord(
        evidence_path=evidence_path,
        evidence_sha256=evidence_sha256,
        evidence_format="pst",
        item_id=item_id,
        folder=folder_path or None,
        parent_item_id=parent,
        message_class=message_class,
    )


def _properties(item: Any, wanted: frozenset[int], warnings: list[str]) -> PropertyMap:
    """Read the raw values of the ``wanted`` tags from every record set of ``item``."""
    props: PropertyMap = {}
    try:
        set_count = item.get_number_of_record_sets()
    except Exception as exc:
        warnings.append(f"properties unreadable: {describe(exc)}")
        return props
    for set_index in range(set_count):
        try:
            record_set = item.get_record_set(set_index)
            entry_count = record_set.get_number_of_entries()
        except Exception as exc:
            warnings.append(f"property set {set_index} unreadable: {describe(exc)}")
            continue
        _read_entries(record_set, entry_count, wanted, props, warnings)
    return props


def _read_entries(
    record_set: Any, count: int, wanted: frozenset[int], props: PropertyMap, warnings: list[str]
) -> None:
    for index in range(count):
        try:
            entry = record_set.get_entry(index)
            tag = entry.get_entry_type()
        except Exception as exc:
            warnings.append(f"property {index} unreadable: {describe(exc)}")
            continue
        if tag not in wanted or tag in props:
            continue
        try:
            value_type = entry.get_value_type()
        except Exception as exc:
            warnings.append(f"property 0x{tag:04X} unreadable: {describe(exc)}")
            continue
        try:
            data = entry.get_data()
        except Exception as exc:
            warnings.append(f"property 0x{tag:04X} unreadable: {describe(exc)}")
            data = None
        props[tag] = (value_type, data)


def _codec(codepage: int | None, default: str) -> str:
    if codepage is None:
        return default
    name = _CODEPAGES.get(codepage, f"cp{codepage}")
    try:
        codecs.lookup(name)
    except LookupError:
        return default
    return name


def _codepage(props: PropertyMap, default: str) -> str:
    return _codec(_int(props, PR_MESSAGE_CODEPAGE), default)


def _decode_string(value_type: int, data: bytes, codec: str) -> str:
    if value_type == PT_UNICODE:
        text = data.decode("utf-16-le", errors="replace")
    else:
        text = data.decode(codec, errors="replace")
    return text.rstrip("\x00")


def _value(props: PropertyMap, tag: int) -> tuple[int, bytes] | None:
    """The type and bytes of a property that was read, or None."""
    value = props.get(tag)
    if value is None:
        return None
    value_type, data = value
    return None if data is None else (value_type, data)


def _text(
    props: PropertyMap, tag: int, codec: str, warnings: list[str], limit: int | None = None
) -> str | None:
    """A string property as text (trailing NULs removed), or None when absent or not text."""
    value = _value(props, tag)
    if value is None:
        return None
    value_type, data = value
    if value_type not in (PT_UNICODE, PT_STRING8, PT_BINARY):
        warnings.append(f"property 0x{tag:04X} has type 0x{value_type:04X}, not text")
        return None
    if limit is not None:
        data = data[:limit]
    try:
        return _decode_string(value_type, data, codec)
    except Exception as exc:
        warnings.append(f"property 0x{tag:04X} undecodable: {describe(exc)}")
        return None


def _int(props: PropertyMap, tag: int) -> int | None:
    value = _value(props, tag)
    if value is None:
        return None
    value_type, data = value
    if value_type in (PT_SHORT, PT_LONG, PT_LONGLONG, PT_BOOLEAN) and 1 <= len(data) <= 8:
        return int.from_bytes(data, "little", signed=value_type != PT_BOOLEAN)
    return None


def _time(props: PropertyMap, tag: int, warnings: list[str]) -> datetime | None:
    """A PtypTime (FILETIME: 100 ns since 1601, UTC) as aware UTC, or None."""
    value = _value(props, tag)
    if value is None:
        return None
    value_type, data = value
    if value_type != PT_SYSTIME or len(data) != 8:
        return None
    ticks = struct.unpack("<Q", data)[0]
    if ticks == 0 or ticks >= 0x7FFFFFFFFFFFFFFF:
        return None
    try:
        return _FILETIME_EPOCH + timedelta(microseconds=ticks // 10)
    except OverflowError:
        warnings.append(f"property 0x{tag:04X} holds an impossible time ({ticks})")
        return None


def _binary(props: PropertyMap, tag: int) -> bytes | None:
    value = props.get(tag)
    if value is None or value[1] is None or value[0] != PT_BINARY:
        return None
    return value[1]


def _subject(props: PropertyMap, codec: str, warnings: list[str]) -> str | None:
    subject = _text(props, PR_SUBJECT, codec, warnings)
    # A PST subject may start with 0x01 and the length of its prefix ("RE: ").
    if subject and subject[0] == "\x01":
        subject = subject[2:]
    return subject


def _address(smtp: str | None, email: str | None, addrtype: str | None) -> str:
    """The best internet address: SMTP property, else an address that is not an EX DN."""
    for candidate in (smtp, email):
        if candidate and "@" in candidate and not candidate.startswith("/"):
            return candidate.strip().lower()
    if email and (addrtype or "").upper() not in ("EX", ""):
        return email.strip().lower()
    return ""


def _fill_from_properties(record: MessageRecord, props: PropertyMap, codec: str) -> None:
    warnings = record.warnings
    record.subject_raw = _subject(props, codec, warnings)
    # Normalised as a Subject header is, so the same subject compares equal everywhere.
    record.subject = " ".join(record.subject_raw.split()) if record.subject_raw else None

    sender_name = _text(props, PR_SENDER_NAME, codec, warnings) or ""
    sender_address = _address(
        _text(props, PR_SENDER_SMTP_ADDRESS, codec, warnings),
        _text(props, PR_SENDER_EMAIL, codec, warnings),
        _text(props, PR_SENDER_ADDRTYPE, codec, warnings),
    )
    from_name = _text(props, PR_SENT_REPRESENTING_NAME, codec, warnings) or ""
    from_address = _address(
        _text(props, PR_SENT_REPRESENTING_SMTP_ADDRESS, codec, warnings),
        _text(props, PR_SENT_REPRESENTING_EMAIL, codec, warnings),
        _text(props, PR_SENT_REPRESENTING_ADDRTYPE, codec, warnings),
    )
    if from_name or from_address:
        record.from_ = [Address(from_name, from_address)]
    elif sender_name or sender_address:
        record.from_ = [Address(sender_name, sender_address)]
    if sender_address and record.from_ and sender_address != record.from_[0].address:
        record.sender = [Address(sender_name, sender_address)]

    record.delivery_time = _time(props, PR_MESSAGE_DELIVERY_TIME, warnings)
    record.submit_time = _time(props, PR_CLIENT_SUBMIT_TIME, warnings)
    record.message_id = h.parse_message_id(_text(props, PR_INTERNET_MESSAGE_ID, codec, warnings))
    record.in_reply_to = h.parse_message_id(_text(props, PR_IN_REPLY_TO_ID, codec, warnings))
    record.references = h.parse_message_ids(_text(props, PR_INTERNET_REFERENCES, codec, warnings))
    record.thread_topic = _text(props, PR_CONVERSATION_TOPIC, codec, warnings)
    index = _binary(props, PR_CONVERSATION_INDEX)
    if index:
        record.conversation_index = index.hex()
        # A Thread-Index header is this property in base64 ([MS-OXOMSG] 2.2.1.3).
        record.thread_index = base64.b64encode(index).decode("ascii")
    _fill_body(record, props, codec)


def _fill_body(record: MessageRecord, props: PropertyMap, codec: str) -> None:
    warnings = record.warnings
    plain = props.get(PR_BODY)
    if plain is not None and plain[1] is not None:
        # Decode only what the cap can keep: at most 4 bytes per character.
        limit = 4 * (BODY_CAP_CHARS + 1)
        text = _text(props, PR_BODY, codec, warnings, limit) or ""
        set_body(record, text)
        if len(plain[1]) > limit:
            record.body_truncated = True
        return
    html = props.get(PR_HTML)
    if html is not None and html[1] is not None:
        html_codec = _codec(_int(props, PR_INTERNET_CPID), codec)
        text = _text(props, PR_HTML, html_codec, warnings, MAX_HTML_BYTES) or ""
        set_body(record, html_to_text(text))
        if len(html[1]) > MAX_HTML_BYTES:
            record.body_truncated = True
        return
    if PR_RTF_COMPRESSED in props:
        warnings.append("body stored only as compressed RTF; not converted")


def _fill_headers(record: MessageRecord, props: PropertyMap, codec: str) -> None:
    text = _text(props, PR_TRANSPORT_MESSAGE_HEADERS, codec, record.warnings)
    if not text or not text.strip():
        record.has_transport_headers = False
        return
    headers, warnings = parse_header_block(text)
    record.warnings.extend(warnings)
    apply_headers(record, headers)


def _read_recipients(item: Any) -> list[PropertyMap | str]:
    """The raw properties of each recipient of ``item``, in table order, with a warning
    (a string) where a recipient or the table could not be read."""
    rows: list[PropertyMap | str] = []
    try:
        recipients = item.recipients
    except Exception as exc:
        rows.append(f"recipients unreadable: {describe(exc)}")
        return rows
    if recipients is None:
        return rows
    try:
        count = recipients.get_number_of_record_sets()
    except Exception as exc:
        rows.append(f"recipients unreadable: {describe(exc)}")
        return rows
    for index in range(count):
        props: PropertyMap = {}
        warnings: list[str] = []
        try:
            record_set = recipients.get_record_set(index)
            entries = record_set.get_number_of_entries()
        except Exception as exc:
            rows.append(f"recipient {index} unreadable: {describe(exc)}")
            continue
        _read_entries(record_set, entries, RECIPIENT_TAGS, props, warnings)
        rows.extend(warnings)
        rows.append(props)
    return rows


def _fill_recipients(record: MessageRecord, rows: list[PropertyMap | str], codec: str) -> None:
    """Decode the recipients read by :func:`_read_recipients` into ``record``."""
    dn_only = 0
    for props in rows:
        if isinstance(props, str):
            record.warnings.append(props)
            continue
        name = _text(props, PR_DISPLAY_NAME, codec, record.warnings) or ""
        email = _text(props, PR_EMAIL_ADDRESS, codec, record.warnings)
        address = _address(
            _text(props, PR_SMTP_ADDRESS, codec, record.warnings),
            email,
            _text(props, PR_ADDRTYPE, codec, record.warnings),
        )
        if not name and not address:
            continue
        if email and not address:
            dn_only += 1
        if not address and "@" in name and " " not in name.strip():
            # Unsent drafts keep a typed address only as the display name.
            address = name.strip().strip("<>").lower()
        kind = (_int(props, PR_RECIPIENT_TYPE) or 1) & 0x0FFFFFFF
        target = {2: record.cc, 3: record.bcc}.get(kind, record.to)
        target.append(Address(name, address))
    if dn_only:
        record.warnings.append(f"{dn_only} recipient(s) with an Exchange address only")


def _fill_attachments(
    context: _Context, record: MessageRecord, item: Any, folder_path: str, warnings: list[str]
) -> list[ReadEvent]:
    """List the attachments on ``record`` (what goes wrong in ``warnings``); return the
    events of embedded messages."""
    embedded: list[ReadEvent] = []
    try:
        count = item.get_number_of_attachments()
    except AttributeError:
        return embedded
    except Exception as exc:
        warnings.append(f"attachments unreadable: {describe(exc)}")
        return embedded
    if count > MAX_ATTACHMENTS:
        warnings.append(f"{count} attachments; only {MAX_ATTACHMENTS} listed")
    for index in range(min(count, MAX_ATTACHMENTS)):
        try:
            attachment = item.get_attachment(index)
        except Exception as exc:
            warnings.append(f"attachment {index} unreadable: {describe(exc)}")
            continue
        listed, event = _attachment(context, record, attachment, index, folder_path, warnings)
        record.attachments.append(listed)
        if event is not None:
            embedded.append(event)
    return embedded


def _attachment(
    context: _Context,
    record: MessageRecord,
    attachment: Any,
    index: int,
    folder_path: str,
    record_warnings: list[str],
) -> tuple[Attachment, ReadEvent | None]:
    warnings: list[str] = []
    props = _properties(attachment, ATTACHMENT_TAGS, warnings)
    codec = context.codepage
    name = (
        _text(props, PR_ATTACH_LONG_FILENAME, codec, warnings)
        or _text(props, PR_ATTACH_FILENAME, codec, warnings)
        or _text(props, PR_DISPLAY_NAME, codec, warnings)
        or None
    )
    mime_type = _text(props, PR_ATTACH_MIME_TAG, codec, warnings) or None
    try:
        size: int | None = int(attachment.get_size())
    except Exception as exc:
        warnings.append(f"size unreadable: {describe(exc)}")
        size = None
    is_message = _int(props, PR_ATTACH_METHOD) == ATTACH_EMBEDDED_MSG
    event: ReadEvent | None = None
    if is_message:
        digest, event = _embedded(context, record, attachment, index, size, folder_path, warnings)
    else:
        digest = _hash_attachment(attachment, size, warnings)
    record_warnings.extend(f"attachment {index}: {warning}" for warning in warnings)
    return Attachment(name, size, mime_type, digest, is_message=is_message), event


def _hash_attachment(attachment: Any, size: int | None, warnings: list[str]) -> str | None:
    """SHA-256 of the attachment's data, read in chunks; None when it cannot be read."""
    if size is None:
        return None
    if size > MAX_HASHED_ATTACHMENT_BYTES:
        warnings.append(f"larger than {MAX_HASHED_ATTACHMENT_BYTES} bytes; not hashed")
        return None
    digest = hashlib.sha256()
    done = 0
    try:
        attachment.seek_offset(0, 0)
        while done < size:
            chunk = attachment.read_buffer(min(ATTACHMENT_CHUNK_BYTES, size - done))
            if not chunk:
                break
            digest.update(chunk)
            done += len(chunk)
    except Exception as exc:
        warnings.append(f"data unreadable after {done} bytes: {describe(exc)}")
        return None
    if done != size:
        warnings.append(f"data ends after {done} of {size} bytes; not hashed")
        return None
    return digest.hexdigest()


def _embedded(
    context: _Context,
    parent: MessageRecord,
    attachment: Any,
    index: int,
    size: int | None,
    folder_path: str,
    warnings: list[str],
) -> tuple[str | None, ReadEvent | None]:
    """Hash and parse an embedded message; return its digest and its event."""
    item_id = f"{parent.item_id}/attachment {index}"
    if size is None or size > MAX_EMBEDDED_BYTES:
        warnings.append(f"embedded message of {size} bytes not read")
        return None, None
    try:
        attachment.seek_offset(0, 0)
        data = bytes(attachment.read_buffer(size))
    except Exception as exc:
        warnings.append(f"embedded message unreadable: {describe(exc)}")
        return None, None
    digest = hashlib.sha256(data).hexdigest()
    try:
        event = _embedded_record(context, data, item_id, folder_path, parent.item_id)
    except Exception as exc:
        event = ItemFailure(context.evidence.path, item_id, f"embedded message unreadable: {exc}")
    return digest, event


def _embedded_record(
    context: _Context, data: bytes, item_id: str, folder_path: str, parent_id: str
) -> ReadEvent:
    props, unreachable = parse_property_context(data, MESSAGE_TAGS)
    warnings: list[str] = []
    codec = _codepage(props, context.codepage)
    message_class = _text(props, PR_MESSAGE_CLASS, codec, warnings) or ""
    if message_class and not is_mail_class(message_class):
        return NonMailItem(context.evidence.path, item_id, message_class)
    evidence = context.evidence
    record = _new_record(
        evidence.path, evidence.sha256, item_id, folder_path, message_class or "IPM.Note", parent_id
    )
    record.warnings.extend(warnings)
    if not message_class:
        record.warnings.append("no message class; read as mail")
    _fill_from_properties(record, props, codec)
    _fill_headers(record, props, codec)
    if not record.has_transport_headers:
        for field_name, tag in (
            ("to", PR_DISPLAY_TO),
            ("cc", PR_DISPLAY_CC),
            ("bcc", PR_DISPLAY_BCC),
        ):
            names = _text(props, tag, codec, record.warnings)
            if names:
                setattr(record, field_name, _display_addresses(names))
    if unreachable:
        listed = ", ".join(f"0x{tag:04X}" for tag in sorted(unreachable))
        record.warnings.append(f"embedded message: properties in sub-nodes not readable: {listed}")
    record.warnings.append(
        "embedded message: recipient table and attachments not readable; "
        "recipients from display names"
    )
    return record


def _display_addresses(names: str) -> list[Address]:
    """Addresses from a PidTagDisplayTo-style list: names (or bare addresses) split on ';'."""
    addresses: list[Address] = []
    for piece in names.split(";"):
        piece = piece.strip()
        if not piece:
            continue
        if "@" in piece and " " not in piece:
            addresses.append(Address("", piece.strip("<>").lower()))
        else:
            addresses.append(Address(piece, ""))
    return addresses


def parse_property_context(
    data: bytes, wanted: frozenset[int] | None = None
) -> tuple[PropertyMap, set[int]]:
    """Parse a property context (PC) from a node's bytes ([MS-PST] 2.3.1 to 2.3.3).

    libpff hands over an embedded message only as the raw bytes of its node: a
    heap-on-node (HN) holding a B-tree-on-heap (BTH) of ``(tag, type, value)`` records.
    Values of up to 4 bytes sit in the record; longer ones are heap allocations, or
    sub-nodes this function cannot reach.

    Args:
        data: the node's data (one HN block; several blocks of 8176 or 8180 bytes).
        wanted: tags to keep, or None for all.

    Returns:
        The properties found and the tags whose value lives in a sub-node.

    Raises:
        ValueError: when ``data`` is not a property context.
    """
    heap = _Heap(data)
    b_type, key_size, entry_size, levels, root = struct.unpack_from(
        "<BBBBI", heap.allocation(heap.user_root)
    )
    if b_type != 0xB5 or key_size != 2 or entry_size != 6:
        raise ValueError("not a property context B-tree")
    records = heap.leaf_records(root, levels, key_size)
    props: PropertyMap = {}
    unreachable: set[int] = set()
    for offset in range(0, len(records) - 7, 8):
        tag, value_type, value = struct.unpack_from("<HHI", records, offset)
        if wanted is not None and tag not in wanted:
            continue
        if value_type in _INLINE_TYPES:
            props[tag] = (value_type, struct.pack("<I", value)[: _INLINE_TYPES[value_type]])
        elif value == 0:
            props[tag] = (value_type, b"")
        elif value & 0x1F == 0:
            props[tag] = (value_type, heap.allocation(value))
        else:
            unreachable.add(tag)
    return props, unreachable


class _Heap:
    """Allocations of a heap-on-node ([MS-PST] 2.3.1), addressed by HID."""

    #: Data block sizes of Unicode and ANSI files, tried when the heap spans blocks.
    BLOCK_SIZES = (8176, 8180)

    def __init__(self, data: bytes) -> None:
        if len(data) < 12 or data[2] != 0xEC or data[3] != 0xBC:
            raise ValueError("not a heap-on-node property context")
        self.data = data
        self.user_root = struct.unpack_from("<I", data, 4)[0]
        self.blocks = self._split(data)

    def _split(self, data: bytes) -> list[tuple[int, tuple[int, ...]]]:
        """Return ``(block start, allocation offsets)`` for each block of the heap."""
        if len(data) <= min(self.BLOCK_SIZES):
            return [(0, self._page_map(data, 0, len(data), struct.unpack_from("<H", data)[0]))]
        for block_size in self.BLOCK_SIZES:
            try:
                return [
                    (start, self._page_map(data, start, block_size, self._map_offset(data, start)))
                    for start in range(0, len(data), block_size)
                ]
            except (ValueError, struct.error):
                continue
        raise ValueError("heap blocks not recognised")

    @staticmethod
    def _map_offset(data: bytes, start: int) -> int:
        # Every block begins with ibHnpm (a bitmap header on blocks 8, 136...: same field).
        return int(struct.unpack_from("<H", data, start)[0])

    @staticmethod
    def _page_map(data: bytes, start: int, block_size: int, map_offset: int) -> tuple[int, ...]:
        end = min(len(data), start + block_size)
        if not 0 < map_offset < end - start:
            raise ValueError("page map outside its block")
        count, _free = struct.unpack_from("<HH", data, start + map_offset)
        offsets = struct.unpack_from(f"<{count + 1}H", data, start + map_offset + 4)
        if any(b < a for a, b in itertools.pairwise(offsets)) or offsets[-1] > end - start:
            raise ValueError("page map offsets out of order")
        return tuple(offsets)

    def allocation(self, hid: int) -> bytes:
        """The bytes of heap allocation ``hid``."""
        index = (hid >> 5) & 0x7FF
        block = hid >> 16
        if block >= len(self.blocks):
            raise ValueError(f"heap id 0x{hid:08X} outside the heap")
        start, offsets = self.blocks[block]
        if not 1 <= index < len(offsets):
            raise ValueError(f"heap id 0x{hid:08X} not allocated")
        return self.data[start + offsets[index - 1] : start + offsets[index]]

    def leaf_records(self, root: int, levels: int, key_size: int) -> bytes:
        """The concatenated leaf records of a BTH, following index levels if any."""
        if root == 0:
            return b""
        if levels == 0:
            return self.allocation(root)
        leaves: list[bytes] = []
        step = key_size + 4
        level_hids = [root]
        for _ in range(levels):
            next_hids: list[int] = []
            for hid in level_hids:
                block = self.allocation(hid)
                for offset in range(0, len(block) - step + 1, step):
                    next_hids.append(struct.unpack_from("<I", block, offset + key_size)[0])
            level_hids = next_hids
        for hid in level_hids:
            leaves.append(self.allocation(hid))
        return b"".join(leaves)
