"""Build message records from RFC 5322 messages and header blocks (shared by all readers)."""

from __future__ import annotations

import base64
import binascii
import email
import email.message
import email.policy
import hashlib
import logging
import quopri
import re
import sys
import threading
from collections.abc import Callable, Iterator
from email.message import Message
from typing import Any, TypeVar

from inbec_export.model import (
    BODY_CAP_CHARS,
    DATE_AFTER_DELIVERY,
    Attachment,
    Headers,
    MessageRecord,
    ReadEvent,
)
from inbec_export.readers import headers as h

logger = logging.getLogger(__name__)

#: Header block size parsed at most, in characters; the rest is dropped and the cut
#: recorded. Large enough that padding cannot push the fields that matter out of reach.
MAX_HEADER_BLOCK_BYTES = 16 * 1024 * 1024

#: One header field's value kept at most, in characters (a 100,000-recipient To fits).
MAX_FIELD_CHARS = 4 * 1024 * 1024

#: Most header fields kept from one message.
MAX_HEADER_FIELDS = 5_000

#: Fields the rules read, kept even past :data:`MAX_HEADER_FIELDS`: padding a message
#: with junk fields must not hide its sender, subject or authentication results.
ALWAYS_KEPT_FIELDS = frozenset(
    {
        "from",
        "sender",
        "reply-to",
        "return-path",
        "to",
        "cc",
        "bcc",
        "subject",
        "date",
        "message-id",
        "in-reply-to",
        "references",
        "thread-index",
        "thread-topic",
        "x-originating-ip",
        "x-sender-ip",
        "authentication-results",
        "arc-authentication-results",
        "received-spf",
        "x-mailer",
        "user-agent",
        "content-type",
        "content-transfer-encoding",
        "mime-version",
        "list-id",
        "list-post",
        "precedence",
    }
)

#: Most of those fields kept past :data:`MAX_HEADER_FIELDS`.
MAX_KEPT_PAST_LIMIT = 1_000

#: Most attachments listed from one message.
MAX_ATTACHMENTS = 2_000

#: Deepest MIME nesting walked.
MAX_MIME_DEPTH = 50


def parse_header_block(text: str) -> tuple[Headers, list[str]]:
    """Split a raw header block into ordered ``(name, value)`` fields.

    Returns the headers and warnings about what was cut. Lines that are neither a field
    nor a continuation are skipped (as RFC 5322 parsers do), with a warning.
    """
    warnings: list[str] = []
    if len(text) > MAX_HEADER_BLOCK_BYTES:
        warnings.append(f"header block of {len(text)} characters cut to {MAX_HEADER_BLOCK_BYTES}")
        text = text[:MAX_HEADER_BLOCK_BYTES]
    fields: list[tuple[str, list[str], int]] = []
    skipped = 0
    dropped = 0
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if not line.strip():
            if fields:
                break
            continue
        if line[0] in " \t" and fields:
            name, parts, size = fields[-1]
            if size < MAX_FIELD_CHARS:
                parts.append(line)
            fields[-1] = (name, parts, size + len(line) + 1)
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or " " in name.strip() or name.startswith("From "):
            skipped += 1
            continue
        if len(fields) >= MAX_HEADER_FIELDS and (
            name.strip().lower() not in ALWAYS_KEPT_FIELDS
            or len(fields) >= MAX_HEADER_FIELDS + MAX_KEPT_PAST_LIMIT
        ):
            dropped += 1
            continue
        value = value.lstrip(" \t")
        fields.append((name.strip(), [value], len(value)))
    if skipped:
        warnings.append(f"{skipped} malformed header line(s) skipped")
    if dropped:
        warnings.append(f"{dropped} header field(s) past the first {MAX_HEADER_FIELDS} dropped")
    items: list[tuple[str, str]] = []
    for name, parts, size in fields:
        value = "\n".join(parts)
        if size > MAX_FIELD_CHARS:
            value = value[:MAX_FIELD_CHARS]
            warnings.append(f"{name} header of {size} characters cut to {MAX_FIELD_CHARS}")
        items.append((name, value))
    return Headers(items), warnings


def apply_headers(record: MessageRecord, headers: Headers) -> None:
    """Fill ``record``'s header-derived fields from ``headers``.

    Fields the headers lack keep what the reader already set (MAPI properties, for
    example), so transport headers and properties complement each other.
    """
    record.headers = headers
    for field_name, header_name in (
        ("from_", "from"),
        ("sender", "sender"),
        ("reply_to", "reply-to"),
        ("return_path", "return-path"),
        ("to", "to"),
        ("cc", "cc"),
        ("bcc", "bcc"),
    ):
        values = headers.get_all(header_name)
        if values:
            parsed = h.parse_addresses(values)
            if parsed or not getattr(record, field_name):
                setattr(record, field_name, parsed)

    subject = headers.get("subject")
    if subject is not None:
        record.subject_raw = subject
        record.subject, record.subject_decode_error = h.decode_subject(subject)

    date_raw = headers.get("date")
    if date_raw is not None:
        record.date_raw = date_raw
        record.date = h.parse_date(date_raw)
        if record.date is None:
            record.warnings.append(f"unparseable Date header {date_raw[:80]!r}")

    record.message_id = h.parse_message_id(headers.get("message-id")) or record.message_id
    record.in_reply_to = h.parse_message_id(headers.get("in-reply-to")) or record.in_reply_to
    references = h.parse_message_ids(" ".join(headers.get_all("references")))
    record.references = references or record.references
    record.thread_index = _first(headers, "thread-index") or record.thread_index
    topic = _first(headers, "thread-topic")
    if topic is not None:
        record.thread_topic = h.decode_subject(topic)[0]

    record.originating_ips = h.parse_originating_ips(
        headers.get_all("x-originating-ip") + headers.get_all("x-sender-ip")
    )
    record.hops = [h.parse_received(value) for value in headers.get_all("received")[:500]]
    # The topmost Received header is the final delivery (RFC 5321 section 4.4); readers
    # with a stored delivery time (PST, MSG) keep theirs.
    if record.delivery_time is None and record.hops:
        record.delivery_time = record.hops[0].timestamp
    _check_date(record)
    record.auth_results = _auth_results(headers)
    record.x_mailer = _first(headers, "x-mailer") or _first(headers, "user-agent")
    record.content_type = _first(headers, "content-type")
    if record.content_type:
        record.content_type = record.content_type.split(";", 1)[0].strip().lower()
    record.has_transport_headers = bool(headers.get_all("received")) or "from" in headers


#: A Date header further than this from the delivery time is reported on the record
#: (one that far after it is not the message's time: see MessageRecord.timestamp).
DATE_DELIVERY_TOLERANCE = DATE_AFTER_DELIVERY


def _check_date(record: MessageRecord) -> None:
    if record.date is None or record.delivery_time is None:
        return
    gap = record.delivery_time - record.date
    if abs(gap) > DATE_DELIVERY_TOLERANCE:
        after = gap.total_seconds() < 0
        record.warnings.append(
            f"Date header {record.date.isoformat()} is {abs(gap).days} days "
            f"{'after' if after else 'before'} delivery "
            f"{record.delivery_time.isoformat()}"
            + ("; the delivery time is taken as the message's time" if after else "")
        )


def _first(headers: Headers, name: str) -> str | None:
    value = headers.get(name)
    return h.unfold(value).strip() if value is not None else None


def _auth_results(headers: Headers) -> list:  # type: ignore[type-arg]
    results = []
    for value in headers.get_all("authentication-results")[:100]:
        results.extend(h.parse_authentication_results(value, "authentication-results"))
    for value in headers.get_all("arc-authentication-results")[:100]:
        results.extend(h.parse_authentication_results(value, "arc-authentication-results"))
    for value in headers.get_all("received-spf")[:100]:
        spf = h.parse_received_spf(value)
        if spf is not None:
            results.append(spf)
    return results


#: Deepest chain of messages attached to messages (message/rfc822) that is read.
MAX_EMBED_DEPTH = 50


#: Recursion limit for parsing a message nested deeper than the interpreter's default
#: allows (the standard library's MIME parser and generator recurse once per level).
DEEP_RECURSION_LIMIT = 30_000

#: Stack of the thread that does such a parse, in bytes (the default is too small).
DEEP_STACK_BYTES = 512 * 1024 * 1024

_T = TypeVar("_T")


def deep_call(function: Callable[..., _T], *arguments: Any) -> _T:
    """``function(*arguments)``; on RecursionError, again in a thread with a large stack
    and a high recursion limit, so that a hostile nesting of thousands of MIME levels is
    read rather than lost. A RecursionError even then is raised."""
    try:
        return function(*arguments)
    except RecursionError:
        logger.debug("deep nesting: parsing again with a larger stack")
    outcome: dict[str, Any] = {}

    def run() -> None:
        previous = sys.getrecursionlimit()
        sys.setrecursionlimit(max(previous, DEEP_RECURSION_LIMIT))
        try:
            outcome["value"] = function(*arguments)
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc
        finally:
            sys.setrecursionlimit(previous)

    with _DEEP_LOCK:
        previous_size = threading.stack_size(DEEP_STACK_BYTES)
        try:
            worker = threading.Thread(target=run, name="inbec-deep-parse")
            worker.start()
        finally:
            threading.stack_size(previous_size)
        worker.join()
    if "error" in outcome:
        raise outcome["error"]
    result: _T = outcome["value"]
    return result


_DEEP_LOCK = threading.Lock()


def read_message_tree(
    record: MessageRecord, raw: bytes, failure: Callable[[str, str], ReadEvent]
) -> Iterator[ReadEvent]:
    """``record`` filled from ``raw``, then every message attached to it, depth first.

    An attached message (``message/rfc822``, as "forward as attachment" makes) becomes a
    record of its own: item ``"<parent>/attachment <n>"`` with ``n`` its position among
    the parent's attachments, and ``parent_item_id`` set. Chains deeper than
    :data:`MAX_EMBED_DEPTH` stop there, with a warning on the last record read.

    Args:
        record: the outer message's record, with evidence and item already set.
        raw: the outer message's bytes.
        failure: builds the failure event of an item (item id, reason).
    """
    pending: list[tuple[MessageRecord, bytes, int]] = [(record, raw, 0)]
    while pending:
        current, data, depth = pending.pop()
        embedded: list[tuple[int, bytes]] = []
        try:
            record_from_bytes(current, data, embedded)
        except Exception as exc:
            yield failure(current.item_id, f"unreadable message: {type(exc).__name__}: {exc}")
            continue
        if embedded and depth >= MAX_EMBED_DEPTH:
            current.warnings.append(
                f"{len(embedded)} attached message(s) nested deeper than {MAX_EMBED_DEPTH} "
                "levels; not read"
            )
            embedded = []
        yield current
        children = [
            (
                MessageRecord(
                    evidence_path=current.evidence_path,
                    evidence_sha256=current.evidence_sha256,
                    evidence_format=current.evidence_format,
                    item_id=f"{current.item_id}/attachment {position}",
                    parent_item_id=current.item_id,
                ),
                child,
                depth + 1,
            )
            for position, child in embedded
        ]
        # Reversed, so the stack pops them in the order they appear.
        pending.extend(reversed(children))


def record_from_bytes(
    record: MessageRecord, raw: bytes, embedded: list[tuple[int, bytes]] | None = None
) -> MessageRecord:
    """Fill ``record`` from a whole RFC 5322 message (headers, body, attachments).

    Args:
        record: the record to fill.
        raw: the message's bytes.
        embedded: when given, receives ``(attachment position, bytes)`` of each message
            attached to this one (``message/rfc822``), for the caller to read in turn.
    """
    header_end = _header_end(raw)
    headers, warnings = parse_header_block(decode_header_bytes(raw[:header_end]))
    record.warnings.extend(warnings)
    apply_headers(record, headers)
    try:
        message = deep_call(email.message_from_bytes, raw[: header_end + 64 * 1024 * 1024])
    except Exception as exc:  # the stdlib parser is lenient, but be sure
        record.warnings.append(f"MIME structure unreadable: {exc}")
        return record
    try:
        fill_body_and_attachments(record, message, embedded)
    except Exception as exc:  # headers are kept whatever the body does
        record.warnings.append(f"body and attachments unreadable: {type(exc).__name__}: {exc}")
    return record


def decode_header_bytes(data: bytes) -> str:
    """A raw header block as text: UTF-8 (RFC 6532), else, line by line, Windows-1252.

    RFC 5322 headers are ASCII, but mailers write 8-bit names and subjects raw, mostly in
    UTF-8 or a Windows code page: ``Andr\xe9`` is read as ``André``, not lost. Bytes that
    code page leaves undefined become U+FFFD.
    """
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    lines = []
    for line in data.split(b"\n"):
        try:
            lines.append(line.decode("utf-8"))
        except UnicodeDecodeError:
            lines.append(line.decode("cp1252", errors="replace"))
    return "\n".join(lines)


def _header_end(raw: bytes) -> int:
    positions = [p for p in (raw.find(b"\r\n\r\n"), raw.find(b"\n\n")) if p >= 0]
    return min(positions) if positions else len(raw)


def fill_body_and_attachments(
    record: MessageRecord, message: Message, embedded: list[tuple[int, bytes]] | None = None
) -> None:
    """Walk the MIME tree of ``message`` for body text and attachments.

    An attached message (``message/rfc822``) is listed as an attachment and not walked
    into: its body and attachments are its own, not the outer message's. Its bytes go to
    ``embedded`` when given.
    """
    plain: list[str] = []
    html: list[str] = []
    count = 0
    too_deep = False
    for part, depth in _walk(message, MAX_MIME_DEPTH):
        if depth > MAX_MIME_DEPTH:
            if not too_deep:
                record.warnings.append(
                    f"MIME nesting deeper than {MAX_MIME_DEPTH}; the deeper parts skipped"
                )
            too_deep = True
            continue
        ctype = part.get_content_type()
        if part.is_multipart() and ctype != "message/rfc822":
            continue
        disposition = (part.get_content_disposition() or "").lower()
        filename = _part_filename(part, record)
        if disposition == "attachment" or filename or ctype == "message/rfc822":
            if count < MAX_ATTACHMENTS:
                if ctype == "message/rfc822":
                    data = _message_bytes(part, record)
                    record.attachments.append(_attachment(part, filename, ctype, data))
                    if data and embedded is not None:
                        embedded.append((count, data))
                else:
                    decoded = _base64_attachment(part, filename or ctype, record)
                    record.attachments.append(_attachment(part, filename, ctype, decoded))
            count += 1
            continue
        if ctype == "text/plain":
            plain.append(_part_text(part))
        elif ctype == "text/html":
            html.append(_part_text(part))
    if count > MAX_ATTACHMENTS:
        record.warnings.append(f"{count} attachments; only {MAX_ATTACHMENTS} listed")
    body = "\n".join(plain) if plain else html_to_text("\n".join(html))
    set_body(record, body)


def set_body(record: MessageRecord, body: str) -> None:
    """Store ``body`` on the record, capped at :data:`BODY_CAP_CHARS`."""
    if len(body) > BODY_CAP_CHARS:
        record.body = body[:BODY_CAP_CHARS]
        record.body_truncated = True
    else:
        record.body = body


def _walk(message: Message, limit: int) -> Iterator[tuple[Message, int]]:
    """The MIME parts of ``message`` in document order with their depth, without recursion
    (a hostile message nests thousands of levels); parts below ``limit`` + 1 levels are
    not entered. An attached message is a leaf here: it is read as a record of its own."""
    stack: list[tuple[Message, int]] = [(message, 0)]
    while stack:
        part, depth = stack.pop()
        yield part, depth
        if depth > limit:
            continue
        if part.is_multipart() and part.get_content_type() != "message/rfc822":
            payload = part.get_payload()
            if isinstance(payload, list):
                children = [child for child in payload if isinstance(child, Message)]
                stack.extend((child, depth + 1) for child in reversed(children))


def _part_filename(part: Message, record: MessageRecord) -> str | None:
    try:
        name = part.get_filename()
    except Exception:
        name = None
    if name is None:
        return None
    decoded, _ = h.decode_words(str(name))
    return decoded


def _payload_bytes(part: Message) -> bytes:
    try:
        payload = part.get_payload(decode=True)
    except Exception:
        payload = None
    if isinstance(payload, bytes):
        return payload
    raw = part.get_payload()
    if isinstance(raw, str):
        return raw.encode("utf-8", errors="replace")
    if isinstance(raw, list):
        return b"".join(p.as_bytes() for p in raw if isinstance(p, Message))
    return b""


#: A byte that base64 content may not hold (whitespace is removed before the test).
_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/=]")


def decode_base64(data: bytes) -> tuple[bytes, str | None]:
    """Decode base64 content as RFC 2045 asks (line breaks and other whitespace ignored):
    the bytes, and None for sound content; for damaged content (characters outside the
    alphabet, padding inside it, a broken end) the bytes that the rest decodes to, and
    what the damage is."""
    compact = b"".join(data.split())
    try:
        return base64.b64decode(compact, validate=True), None
    except (ValueError, binascii.Error):
        pass
    outside = len(_NOT_BASE64.findall(compact))
    kept = _NOT_BASE64.sub(b"", compact).replace(b"=", b"")
    if len(kept) % 4 == 1:  # a last character alone holds less than a byte
        kept = kept[:-1]
    decoded = base64.b64decode(kept + b"=" * (-len(kept) % 4))
    return decoded, f"{outside} characters outside the alphabet" if outside else "a broken end"


def _transfer_encoding(part: Message) -> str:
    """The part's Content-Transfer-Encoding, lower-cased ("" when it has none)."""
    return str(part.get("content-transfer-encoding", "")).strip().lower()


def _base64_attachment(part: Message, name: str, record: MessageRecord) -> bytes | None:
    """The bytes of a base64 attachment decoded by :func:`decode_base64` (a warning on
    the record when it is damaged); None for an attachment in another encoding."""
    if _transfer_encoding(part) != "base64":
        return None
    raw = part.get_payload()
    if not isinstance(raw, str):
        return None
    data, damage = decode_base64(raw.encode("ascii", errors="replace"))
    if damage:
        record.warnings.append(
            f"attachment {name!r}: its base64 content is damaged ({damage}); the size "
            f"and SHA-256 are those of the {len(data)} bytes the rest decodes to"
        )
    return data


def _message_bytes(part: Message, record: MessageRecord) -> bytes:
    """The bytes of an attached message (``message/rfc822``); empty, with a warning, when
    it cannot be had.

    RFC 2046 allows only 7bit, 8bit or binary here, but senders also base64 or
    quoted-printable encode it: the parser then takes the encoded text for a message with
    no header, so it is decoded here.
    """
    try:
        data = deep_call(_payload_bytes, part)
    except RecursionError:
        record.warnings.append("attached message nested too deep to read; not read")
        return b""
    encoding = _transfer_encoding(part)
    try:
        if encoding == "base64":
            decoded, damage = decode_base64(data)
            if damage:
                # What the rest decodes to is read, and the record says it is not the
                # whole attached message.
                record.warnings.append(
                    f"attached message in base64 is damaged ({damage}); read from the "
                    f"{len(decoded)} bytes the rest decodes to"
                )
            return decoded
        if encoding == "quoted-printable":
            return quopri.decodestring(data)
    except (ValueError, binascii.Error) as exc:
        record.warnings.append(f"attached message in {encoding} undecodable: {exc}")
    return data


def _attachment(
    part: Message, filename: str | None, ctype: str, data: bytes | None = None
) -> Attachment:
    if data is None:
        data = _payload_bytes(part)
    return Attachment(
        name=filename,
        size=len(data),
        mime_type=ctype,
        sha256=hashlib.sha256(data).hexdigest(),
        is_message=ctype == "message/rfc822",
    )


def _part_text(part: Message) -> str:
    data = _payload_bytes(part)
    try:
        charset = part.get_content_charset() or "utf-8"
    except Exception:  # a malformed charset parameter
        charset = "utf-8"
    return h.decode_text(data, charset)


def html_to_text(html: str) -> str:
    """Visible text of an HTML body: head, scripts, styles and comments dropped, tags
    removed, entities decoded (enough for keyword rules, not a renderer)."""
    import html as html_lib
    import re

    text = re.sub(r"(?is)<!--.*?-->", " ", html)
    text = re.sub(r"(?is)<(head|script|style)\b.*?</\1\s*>", " ", text)
    text = re.sub(r"(?s)<[^>]+>", " ", text)
    return re.sub(r"[ \t\r\f\v]+", " ", html_lib.unescape(text)).strip()


def decode_thread_index(value: str | None) -> str | None:
    """The conversation key of a Thread-Index: hex of its first 22 bytes ([MS-OXOMSG] 2.2.1.3).

    Replies extend the index by 5 bytes per reply, so the first 22 bytes name the thread.
    """
    if not value:
        return None
    try:
        raw = base64.b64decode(value.strip() + "=" * (-len(value.strip()) % 4))
    except (ValueError, TypeError):
        return None
    return raw[:22].hex() if len(raw) >= 22 else None
