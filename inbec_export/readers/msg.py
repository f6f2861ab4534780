"""Reader for Outlook .msg files (OLE compound files holding one MAPI message, [MS-OXMSG]).

The file is opened with extract-msg and every MAPI property is read on its own, so one
unreadable property costs a warning on the record, not the message. Transport headers
(PidTagTransportMessageHeaders) are parsed like any RFC 5322 header block; the MAPI
properties fill in what the headers lack, so unsent messages and messages that never
had headers still give a full record (``has_transport_headers`` is then False).

Item identity: the file's own message is ``"message"``; an embedded message (an attached
.msg, or an attached RFC 5322 message) is ``"<parent>/attachment <n>"`` with ``n`` the
attachment's position in the parent and ``parent_item_id`` set. Embedded messages are
followed at most :data:`MAX_EMBED_DEPTH` levels deep.

What counts as mail: every message class except the known non-mail ones in
:data:`NON_MAIL_CLASSES` (contacts, distribution lists, appointments, journal entries,
tasks, notes, documents, configuration items), which are reported as
:class:`~inbec_export.model.NonMailItem`. Meeting requests, responses and cancellations
(``IPM.Schedule.Meeting.*``) and task requests travel as mail and can carry a lure, so
they are mail. ``IPM.Post`` (a post in a shared or public folder) has an author, a
subject and a body that detections should see, so it is mail too; its record simply has
no recipients. Reports (``REPORT.*``: delivery and read receipts) are mail. An unknown
class is taken as mail, since dropping mail is worse than listing a stray item.

Limitations:

- Recognition: :meth:`MsgReader.sniff` sees only the first bytes, where every OLE file
  (.doc, .xls, .msi...) looks alike. Such a file is sniffed as ``msg`` and then reported
  by :meth:`MsgReader.read` as an :class:`~inbec_export.model.ItemFailure` ("OLE file but
  not an Outlook message"); the reader interface has no way to hand a file back as
  "not evidence" once it is claimed.
- Exchange senders and recipients stored with only an X.500 address (no SMTP address
  property) get an :class:`~inbec_export.model.Address` with the display name and an
  empty address, as header parsing does for a name without an address.
- ``date`` comes only from a Date header; a message without headers has ``date`` None
  and its time in ``submit_time`` / ``delivery_time`` (``MessageRecord.timestamp`` falls
  back to them).
- An embedded .msg has no byte stream of its own inside its parent, so its attachment
  entry has no SHA-256 (its content is read into its own record instead). Its size is
  PidTagAttachSize when present.
- The body is the plain-text body (extract-msg derives it from RTF when only RTF is
  stored), else the HTML body reduced to text (its head and comments dropped); an
  RTF-only body that extract-msg cannot convert gives an empty body.
- extract-msg opens each file twice internally (once to learn the message class, once
  as the matching class); files are read from disk, not from memory.
"""

from __future__ import annotations

import base64
import codecs
import hashlib
import logging
import mimetypes
import re
import struct
from collections.abc import Callable, Iterator
from datetime import datetime
from functools import partial
from typing import Any, TypeVar

from inbec_export.model import (
    Address,
    Attachment,
    EvidenceFile,
    ItemFailure,
    MessageRecord,
    NonMailItem,
    ReadEvent,
)
from inbec_export.readers import headers as h
from inbec_export.readers.base import SNIFF_BYTES, Reader, describe, one_line, register
from inbec_export.readers.eml import EmlReader
from inbec_export.readers.rfc822 import (
    MAX_ATTACHMENTS,
    apply_headers,
    html_to_text,
    parse_header_block,
    record_from_bytes,
    set_body,
)

logger = logging.getLogger(__name__)

#: Signature of an OLE compound file ([MS-CFB] section 2.2), the container of every .msg.
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"

#: Deepest chain of embedded messages followed (a message in a message in a message...).
MAX_EMBED_DEPTH = 50

#: Most recipients read from one message's recipient table.
MAX_RECIPIENTS = 10_000

#: Largest attached RFC 5322 message parsed into its own record, in bytes.
MAX_EMBEDDED_EML_BYTES = 64 * 1024 * 1024

#: Message classes that are not mail ([MS-OXCMSG] 2.2.1.3); a class matches when it
#: equals one of these or starts with one followed by a dot (case-insensitive).
NON_MAIL_CLASSES: tuple[str, ...] = (
    "IPM.Contact",
    "IPM.DistList",
    "IPM.Appointment",
    "IPM.Activity",
    "IPM.Task",
    "IPM.StickyNote",
    "IPM.Document",
    "IPM.OLE.CLASS",
    "IPM.Configuration",
    "IPM.Microsoft",
)


def _tolerant() -> Any:
    """extract-msg error handling: keep going past broken attachments, RTF that cannot be
    de-encapsulated, standard violations and bad named-property names."""
    from extract_msg.enums import ErrorBehavior

    return (
        ErrorBehavior.ATTACH_SUPPRESS_ALL
        | ErrorBehavior.RTFDE
        | ErrorBehavior.STANDARDS_VIOLATION
        | ErrorBehavior.NAMED_NAME_STREAM
    )


#: Windows code pages ([MS-OXCMSG] PidTagInternetCodepage) whose Python codec is not
#: simply ``cp<number>``.
_CODEPAGES = {
    65001: "utf-8",
    20127: "ascii",
    1200: "utf-16-le",
    1201: "utf-16-be",
    12000: "utf-32-le",
    50220: "iso-2022-jp",
    50221: "iso-2022-jp",
    50222: "iso-2022-jp",
    51932: "euc-jp",
    51949: "euc-kr",
    936: "gb18030",
    54936: "gb18030",
    52936: "hz",
    20866: "koi8-r",
    21866: "koi8-u",
    **{28590 + n: f"iso-8859-{n}" for n in range(1, 16)},
}

#: Provider UID of a one-off entry ID ([MS-OXCDATA] 2.2.5.1).
_ONE_OFF_UID = bytes.fromhex("812b1fa4bea310199d6e00dd010f5402")

#: Built-in extension table only, so that guesses do not depend on the host's mime.types.
_MIME_GUESSER = mimetypes.MimeTypes()

_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_.:-]+)""", re.IGNORECASE)

_MIME_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*$")

#: HTML parts that hold no message text: comments (Word's conditional XML islands) and
#: the head (styles, metadata).
_HTML_NOISE = re.compile(r"(?is)<!--.*?-->|<head\b.*?</head\s*>")


def _c1_table() -> dict[int, str]:
    table: dict[int, str] = {}
    for code in range(0x80, 0xA0):
        try:
            table[code] = bytes([code]).decode("cp1252")
        except UnicodeDecodeError:
            continue
    return table


_C1_AS_CP1252 = _c1_table()

_T = TypeVar("_T")

_MISSING = object()


@register
class MsgReader(Reader):
    """One Outlook message per file, plus the messages embedded in it."""

    format = "msg"
    priority = 20

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        """True for any OLE compound file; :meth:`read` confirms it holds a message."""
        return head[: len(OLE_MAGIC)] == OLE_MAGIC

    def read(self, evidence: EvidenceFile) -> Iterator[ReadEvent]:
        """Yield the file's message (or non-mail item) and every embedded message.

        Args:
            evidence: the opened evidence file.

        Returns:
            An iterator of records, non-mail items and failures; nothing is raised for
            a bad item or file.
        """
        path = evidence.path
        try:
            msg, open_warnings = _open(path)
        except Exception as exc:
            reason = _open_failure_reason(exc)
            yield ItemFailure(path, None, reason)
            return
        try:
            if not _is_message_store(msg):
                reason = "OLE file but not an Outlook message (no MAPI property streams)"
                yield ItemFailure(path, None, reason)
                return
            yield from _ItemReader(evidence).read(msg, "message", None, 0, open_warnings)
        except Exception as exc:
            reason = f"reading stopped: {describe(exc)}"
            yield ItemFailure(path, None, reason)
        finally:
            _close(msg)


def _open(path: str) -> tuple[Any, list[str]]:
    """Open ``path`` with extract-msg; retry tolerating OLE defects if the strict open fails."""
    # extract-msg (and what it imports) takes a quarter of a second to import: only runs
    # with .msg evidence pay for it.
    from extract_msg.enums import ErrorBehavior
    from extract_msg.exceptions import InvalidFileFormatError

    try:
        return _open_with(path, _tolerant()), []
    except InvalidFileFormatError:
        raise
    except OSError as first:
        # olefile rejects some damaged containers that it can still walk when told to
        # tolerate "incorrect" defects; evidence is worth the attempt.
        msg = _open_with(path, _tolerant() | ErrorBehavior.OLE_DEFECT_INCORRECT)
        return msg, [f"OLE container defects tolerated: {one_line(first)}"]


def _open_with(path: str, behaviour: Any) -> Any:
    import extract_msg

    return extract_msg.openMsg(path, strict=False, delayAttachments=True, errorBehavior=behaviour)


def _open_failure_reason(exc: BaseException) -> str:
    from extract_msg.exceptions import InvalidFileFormatError

    if isinstance(exc, InvalidFileFormatError):
        return f"not an OLE compound file: {one_line(exc)}"
    return f"cannot open as an Outlook message: {describe(exc)}"


def _close(msg: Any) -> None:
    try:
        msg.close()
    except Exception as exc:
        logger.debug("closing failed: %s", exc)


def _is_message_store(msg: Any) -> bool:
    """True if the OLE file has the property streams every .msg has ([MS-OXMSG] 2.1)."""
    try:
        if msg.exists("__properties_version1.0"):
            return True
        return any(entry[0].startswith("__substg1.0_") for entry in msg.listDir())
    except Exception:
        return False


def is_non_mail_class(message_class: str) -> bool:
    """True if ``message_class`` is one of :data:`NON_MAIL_CLASSES` or a subclass of one."""
    upper = message_class.upper()
    return any(upper == c.upper() or upper.startswith(c.upper() + ".") for c in NON_MAIL_CLASSES)


class _ItemReader:
    """Builds the events of one evidence file; keeps the evidence and reads item by item."""

    def __init__(self, evidence: EvidenceFile) -> None:
        self.evidence = evidence

    def read(
        self,
        msg: Any,
        item_id: str,
        parent_item_id: str | None,
        depth: int,
        warnings: list[str] | None = None,
    ) -> Iterator[ReadEvent]:
        """Yield the item ``msg`` and, after it, its embedded messages."""
        warnings = list(warnings or [])
        message_class = _message_class(msg, warnings)
        embedded: list[tuple[str, Any]] = []

        if is_non_mail_class(message_class):
            _attachments(msg, item_id, embedded, warnings)
            _bound_depth(embedded, depth, warnings)
            yield NonMailItem(self.evidence.path, item_id, message_class)
        else:
            record = MessageRecord(
                evidence_path=self.evidence.path,
                evidence_sha256=self.evidence.sha256,
                evidence_format="msg",
                item_id=item_id,
                parent_item_id=parent_item_id,
                message_class=message_class,
            )
            record.warnings.extend(warnings)
            _fill_from_mapi(record, msg)
            _fill_from_headers(record, msg)
            _fill_body(record, msg)
            record.attachments = _attachments(msg, item_id, embedded, record.warnings)
            _bound_depth(embedded, depth, record.warnings)
            yield record

        for child_id, child in embedded:
            yield from self._embedded(child, child_id, item_id, depth + 1)

    def _embedded(
        self, child: Any, child_id: str, parent_id: str, depth: int
    ) -> Iterator[ReadEvent]:
        if depth > MAX_EMBED_DEPTH:
            reason = f"embedded message nested deeper than {MAX_EMBED_DEPTH} levels; not read"
            yield ItemFailure(self.evidence.path, child_id, reason)
            return
        if isinstance(child, bytes):
            yield self._embedded_eml(child, child_id, parent_id)
            return
        try:
            yield from self.read(child, child_id, parent_id, depth)
        except Exception as exc:
            reason = f"embedded message unreadable: {describe(exc)}"
            yield ItemFailure(self.evidence.path, child_id, reason)

    def _embedded_eml(self, raw: bytes, child_id: str, parent_id: str) -> ReadEvent:
        record = MessageRecord(
            evidence_path=self.evidence.path,
            evidence_sha256=self.evidence.sha256,
            evidence_format="msg",
            item_id=child_id,
            parent_item_id=parent_id,
        )
        try:
            return record_from_bytes(record, raw)
        except Exception as exc:
            reason = f"attached message unreadable: {describe(exc)}"
            return ItemFailure(self.evidence.path, child_id, reason)


def _bound_depth(embedded: list[tuple[str, Any]], depth: int, warnings: list[str]) -> None:
    """Note on the parent, before it is yielded, that its embedded messages are too deep."""
    if embedded and depth + 1 > MAX_EMBED_DEPTH:
        warnings.append(
            f"{len(embedded)} embedded message(s) nested deeper than {MAX_EMBED_DEPTH}; not read"
        )


def _guarded(warnings: list[str], what: str, read: Callable[[], _T]) -> _T | None:
    """Return ``read()``, or None with a warning naming ``what`` when it raises."""
    try:
        return read()
    except Exception as exc:
        warnings.append(f"{what} unreadable: {describe(exc)}")
        return None


def _clean(value: object) -> str | None:
    """A string property without the NUL padding some writers leave; other types -> None.

    C1 control characters (U+0080 to U+009F) are taken as cp1252 bytes read with a
    Latin-1 code page (ANSI files that state no code page) and mapped back: they are
    never text, while the cp1252 characters at those bytes (ellipsis, dashes, curly
    quotes, euro sign) are common.
    """
    if not isinstance(value, str):
        return None
    text = value.replace("\x00", "").strip().translate(_C1_AS_CP1252)
    return text or None


def _string(source: Any, prop: str, warnings: list[str], what: str) -> str | None:
    """Read the string property ``prop`` (four hex digits) of a message or recipient."""
    return _clean(_guarded(warnings, what, lambda: source.getStringStream("__substg1.0_" + prop)))


def _binary(source: Any, prop: str, warnings: list[str], what: str) -> bytes | None:
    value = _guarded(warnings, what, lambda: source.getStream("__substg1.0_" + prop + "0102"))
    return value if isinstance(value, bytes) else None


def _value(source: Any, prop: str, warnings: list[str], what: str) -> object:
    """Read the fixed-size property ``prop`` (eight hex digits, id and type)."""
    return _guarded(warnings, what, lambda: source.getPropertyVal(prop))


def _time(source: Any, prop: str, warnings: list[str], what: str) -> datetime | None:
    value = _value(source, prop, warnings, what)
    if not isinstance(value, datetime):
        return None
    # extract-msg returns a NullDate for the "no date" FILETIME; 1601-01-01 is FILETIME 0.
    if type(value).__name__ == "NullDate" or value.year <= 1601 or value.year >= 4500:
        return None
    return h.to_utc(value)


def _message_class(msg: Any, warnings: list[str]) -> str:
    value = _string(msg, "001A", warnings, "message class")
    if value is None:
        warnings.append("no message class; read as IPM.Note")
        return "IPM.Note"
    return value


def _fill_from_mapi(record: MessageRecord, msg: Any) -> None:
    """Set the fields the MAPI properties give; headers, when present, override them."""
    w = record.warnings
    record.subject = _string(msg, "0037", w, "subject")
    record.message_id = h.parse_message_id(_string(msg, "1035", w, "Message-ID"))
    record.in_reply_to = h.parse_message_id(_string(msg, "1042", w, "In-Reply-To"))
    record.references = h.parse_message_ids(_string(msg, "1039", w, "References"))
    record.thread_topic = _string(msg, "0070", w, "conversation topic")
    index = _binary(msg, "0071", w, "conversation index")
    if index:
        record.conversation_index = index.hex()
        # The Thread-Index header is this same value in base64 ([MS-OXOMSG] 2.2.1.3).
        record.thread_index = base64.b64encode(index).decode("ascii")
    record.delivery_time = _time(msg, "0E060040", w, "delivery time")
    record.submit_time = _time(msg, "00390040", w, "client submit time")

    author = _mapi_address(msg, ("0042", "5D02", "0065", "0064"), w, "sent-representing")
    sender = _mapi_address(msg, ("0C1A", "5D01", "0C1F", "0C1E"), w, "sender")
    record.from_ = [author] if author else ([sender] if sender else [])
    if sender and author and not _same_mailbox(sender, author):
        record.sender = [sender]
    record.reply_to = _reply_to(msg, w)
    _fill_recipients(record, msg)


def _same_mailbox(one: Address, other: Address) -> bool:
    if one.address or other.address:
        return one.address == other.address
    return one.name == other.name


def _mapi_address(
    source: Any, props: tuple[str, str, str, str], warnings: list[str], what: str
) -> Address | None:
    """Address from (display name, SMTP address, email address, address type) properties."""
    name_prop, smtp_prop, email_prop, type_prop = props
    name = _string(source, name_prop, warnings, f"{what} name") or ""
    smtp = _string(source, smtp_prop, warnings, f"{what} SMTP address")
    email_address = _string(source, email_prop, warnings, f"{what} address")
    address_type = (_string(source, type_prop, warnings, f"{what} address type") or "").upper()
    return _address(name, smtp, email_address, address_type)


def _address(
    name: str, smtp: str | None, email_address: str | None, address_type: str
) -> Address | None:
    address = ""
    if smtp and "@" in smtp:
        address = smtp
    elif email_address and "@" in email_address and address_type in ("SMTP", ""):
        address = email_address
    if not name and not address:
        return None
    return Address(name=name, address=address.strip().lower())


def _fill_recipients(record: MessageRecord, msg: Any) -> None:
    """To/Cc/Bcc from the recipient table (PidTagRecipientType 1, 2, 3)."""
    w = record.warnings
    directories = _guarded(w, "recipient table", lambda: _recipient_dirs(msg)) or []
    if len(directories) > MAX_RECIPIENTS:
        w.append(f"{len(directories)} recipients; only {MAX_RECIPIENTS} read")
    fields = {1: record.to, 2: record.cc, 3: record.bcc}
    for directory in directories[:MAX_RECIPIENTS]:
        recipient = _guarded(w, f"recipient {directory}", partial(_recipient, directory, msg))
        if recipient is None:
            continue
        kind = recipient.typeFlags & 0x0F
        address = _address(
            _string(recipient, "3001", w, "recipient name") or "",
            _string(recipient, "39FE", w, "recipient SMTP address"),
            _string(recipient, "3003", w, "recipient address"),
            (_string(recipient, "3002", w, "recipient address type") or "").upper(),
        )
        if address is not None and kind in fields:
            fields[kind].append(address)


def _recipient(directory: str, msg: Any) -> Any:
    from extract_msg.recipient import Recipient

    # int as the type class: extract-msg's RecipientType rejects values outside 1-3.
    return Recipient(directory, msg, int)  # type: ignore[type-var]


def _recipient_dirs(msg: Any) -> list[str]:
    depth = msg.prefixLen
    found: dict[str, None] = {}
    for entry in msg.listDir():
        if len(entry) > depth + 1 and entry[depth].startswith("__recip_version1.0_"):
            found[entry[depth]] = None
    return sorted(found)


def _reply_to(msg: Any, warnings: list[str]) -> list[Address]:
    """Reply-To from PidTagReplyRecipientEntries, a FlatEntryList of one-off entry IDs."""
    data = _binary(msg, "004F", warnings, "reply recipients")
    if not data:
        return []
    try:
        return _flat_entry_list(data)
    except (struct.error, ValueError, UnicodeDecodeError) as exc:
        warnings.append(f"reply recipients unreadable: {one_line(exc)}")
        return []


def _flat_entry_list(data: bytes) -> list[Address]:
    """Parse a FlatEntryList ([MS-OXCDATA] 2.3.3) keeping one-off entries (2.2.5.1)."""
    count, _ = struct.unpack_from("<II", data, 0)
    position = 8
    addresses: list[Address] = []
    for _ in range(min(count, 1000)):
        (size,) = struct.unpack_from("<I", data, position)
        entry = data[position + 4 : position + 4 + size]
        position += 4 + size + (-size % 4)
        if len(entry) < 24 or entry[4:20] != _ONE_OFF_UID:
            continue
        (flags,) = struct.unpack_from("<H", entry, 22)
        parts = _one_off_strings(entry[24:], unicode=bool(flags & 0x8000))
        if len(parts) >= 3:
            address = _address(parts[0], None, parts[2], parts[1].upper())
            if address is not None:
                addresses.append(address)
    return addresses


def _one_off_strings(data: bytes, unicode: bool) -> list[str]:
    if unicode:
        text = data[: len(data) - len(data) % 2].decode("utf-16-le")
    else:
        text = data.decode("cp1252", errors="replace")
    return [part.strip() for part in text.split("\x00")[:3]]


def _fill_from_headers(record: MessageRecord, msg: Any) -> None:
    text = _string(msg, "007D", record.warnings, "transport headers")
    if not text:
        record.has_transport_headers = False
        return
    # Some stores prefix the block with this banner line; it is not a header field.
    banner = "Microsoft Mail Internet Headers Version 2.0"
    if text.startswith(banner):
        text = text[len(banner) :].lstrip("\r\n")
    headers, warnings = parse_header_block(text)
    record.warnings.extend(warnings)
    apply_headers(record, headers)


def _fill_body(record: MessageRecord, msg: Any) -> None:
    w = record.warnings
    plain = _clean_body(_guarded(w, "plain body", partial(_body_property, msg, "body", "1000")))
    if plain:
        set_body(record, plain)
        return
    html = _guarded(w, "HTML body", partial(_body_property, msg, "htmlBody", "10130102"))
    if isinstance(html, str):
        html = html.encode("utf-8")
    if isinstance(html, bytes) and html:
        codepage = _value(msg, "3FDE0003", w, "internet code page")
        text = _HTML_NOISE.sub(" ", _decode_html(html, codepage))
        set_body(record, html_to_text(text))


def _body_property(msg: Any, attribute: str, stream: str) -> object:
    """extract-msg's body property (which also unwraps signed and RTF-only bodies) when the
    class has one, else the raw property stream."""
    value = getattr(msg, attribute, _MISSING)
    if value is not _MISSING:
        return value
    if stream.endswith("0102"):
        return msg.getStream("__substg1.0_" + stream)
    return msg.getStringStream("__substg1.0_" + stream)


def _clean_body(value: object) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if not isinstance(value, str):
        return None
    return value.replace("\x00", "").strip().translate(_C1_AS_CP1252) or None


def _decode_html(data: bytes, codepage: object) -> str:
    """Decode an HTML body: its meta charset, else the code page, else UTF-8, else cp1252."""
    candidates: list[str] = []
    meta = _META_CHARSET.search(data[:4096])
    if meta:
        candidates.append(h.codec_for(meta.group(1).decode("ascii", "replace")))
    if isinstance(codepage, int):
        candidates.append(_CODEPAGES.get(codepage, f"cp{codepage}"))
    candidates.append("utf-8")
    for codec in candidates:
        try:
            codecs.lookup(codec)
            return data.decode(codec)
        except (LookupError, UnicodeDecodeError):
            continue
    return data.decode("cp1252", errors="replace")


def _attachments(
    msg: Any, item_id: str, embedded: list[tuple[str, Any]], warnings: list[str]
) -> list[Attachment]:
    """List the attachments of ``msg``; append embedded messages to ``embedded``."""
    found = _guarded(warnings, "attachment table", lambda: list(msg.attachments))
    if not found:
        return []
    if len(found) > MAX_ATTACHMENTS:
        warnings.append(f"{len(found)} attachments; only {MAX_ATTACHMENTS} listed")
    listed: list[Attachment] = []
    for index, attachment in enumerate(found[:MAX_ATTACHMENTS]):
        what = f"attachment {index}"
        entry, child = _attachment(attachment, what, warnings)
        listed.append(entry)
        if child is not None:
            embedded.append((f"{item_id}/{what}", child))
    return listed


def _attachment(att: Any, what: str, warnings: list[str]) -> tuple[Attachment, Any]:
    """The attachment entry, and the embedded message (MSGFile or RFC 5322 bytes) if any."""
    name = _attachment_name(att, what, warnings)
    declared = _clean(_guarded(warnings, f"{what} MIME type", lambda: att.mimetype))
    if declared is not None and not _MIME_TYPE.match(declared):
        # Some writers store the file name here; it is not a MIME type.
        declared = None
    data = _guarded(warnings, f"{what} data", lambda: att.data)

    if isinstance(data, bytes):
        mime_type = declared or _guess_mime(name)
        is_eml = _is_attached_message(name, mime_type, data)
        entry = Attachment(
            name=name,
            size=len(data),
            mime_type="message/rfc822" if is_eml and not declared else mime_type,
            sha256=hashlib.sha256(data).hexdigest(),
            is_message=is_eml,
        )
        return entry, (data if is_eml else None)

    if data is not None and hasattr(data, "getStringStream"):
        if name is None:
            name = _string(data, "0037", warnings, f"{what} subject")
        size = _value(att, "0E200003", warnings, f"{what} size")
        entry = Attachment(
            name=name,
            size=size if isinstance(size, int) else None,
            mime_type=declared or "application/vnd.ms-outlook",
            sha256=None,
            is_message=True,
        )
        return entry, data

    # A web reference, or an attachment extract-msg could not read: list it without data.
    if data is None and type(att).__name__ in ("BrokenAttachment", "UnsupportedAttachment"):
        warnings.append(f"{what} unreadable by extract-msg ({type(att).__name__})")
    return Attachment(name=name, size=None, mime_type=declared, sha256=None), None


def _attachment_name(att: Any, what: str, warnings: list[str]) -> str | None:
    for attribute in ("longFilename", "displayName", "shortFilename", "name"):
        value = _clean(_guarded(warnings, f"{what} name", partial(getattr, att, attribute, None)))
        if value:
            return value
    return None


def _guess_mime(name: str | None) -> str | None:
    if not name:
        return None
    guessed, _ = _MIME_GUESSER.guess_type(name, strict=False)
    return guessed


def _is_attached_message(name: str | None, mime_type: str | None, data: bytes) -> bool:
    """True for an attached RFC 5322 message that should become its own record."""
    looks_like = (mime_type or "").lower() == "message/rfc822" or (name or "").lower().endswith(
        ".eml"
    )
    return (
        looks_like and len(data) <= MAX_EMBEDDED_EML_BYTES and EmlReader.sniff(data[:SNIFF_BYTES])
    )
