"""Reader for single RFC 5322 messages (.eml files), with the standard library."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from inbec_export.model import EvidenceFile, ItemFailure, MessageRecord, ReadEvent
from inbec_export.readers.base import Reader, register
from inbec_export.readers.rfc822 import read_message_tree

#: Largest .eml read whole, in bytes; a larger one is reported, not read.
MAX_EML_BYTES = 256 * 1024 * 1024

#: Header names that, near the top of a file, mark it as a message.
_MARKERS = re.compile(
    rb"^(received|from|to|subject|date|message-id|return-path|delivered-to|mime-version|"
    rb"x-[a-z0-9-]+|dkim-signature|authentication-results|content-type|reply-to|sender|"
    rb"arc-[a-z-]+|x-original-to|thread-index|references|in-reply-to)\s*:",
    re.IGNORECASE | re.MULTILINE,
)
_FIELD_LINE = re.compile(rb"^[!-9;-~]+:", re.MULTILINE)


@register
class EmlReader(Reader):
    """One message per file, headers first (RFC 5322)."""

    format = "eml"
    priority = 90

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        text = head.lstrip(b"\r\n\t \xef\xbb\xbf")
        if not text or text.count(b"\x00") > 16:
            return False
        first_line = text.split(b"\n", 1)[0]
        if not _FIELD_LINE.match(first_line):
            return False
        block = re.split(rb"\r?\n\r?\n", text, maxsplit=1)[0]
        markers = {m.group(1).lower() for m in _MARKERS.finditer(block)}
        if len(markers) >= 2:
            return True
        # A first field longer than the sniffed bytes (header padding) leaves one marker
        # and no end of the header block in sight: still a message.
        return len(markers) == 1 and len(block) == len(text) and _MARKERS.match(text) is not None

    @classmethod
    def sniff_named(cls, head: bytes, name: str) -> bool:
        # A file named .eml whose header block holds one known field (``From:`` alone,
        # a message stripped down to its sender) is still a message.
        if not name.lower().endswith(".eml"):
            return False
        text = head.lstrip(b"\r\n\t \xef\xbb\xbf")
        if b"\x00" in text or not _FIELD_LINE.match(text.split(b"\n", 1)[0]):
            return False
        block = re.split(rb"\r?\n\r?\n", text, maxsplit=1)[0]
        return _MARKERS.search(block) is not None

    def read(self, evidence: EvidenceFile) -> Iterator[ReadEvent]:
        if evidence.size > MAX_EML_BYTES:
            yield ItemFailure(evidence.path, None, f"larger than {MAX_EML_BYTES} bytes; not read")
            return
        raw = Path(evidence.path).read_bytes()
        record = MessageRecord(
            evidence_path=evidence.path,
            evidence_sha256=evidence.sha256,
            evidence_format="eml",
            item_id="message",
        )
        yield from read_message_tree(
            record, raw, lambda item, reason: ItemFailure(evidence.path, item, reason)
        )
