"""Reader for mbox archives (RFC 4155), streamed message by message."""

from __future__ import annotations

import re
from collections.abc import Iterator

from inbec_export.model import EvidenceFile, ItemFailure, MessageRecord, ReadEvent
from inbec_export.readers.base import Reader, register
from inbec_export.readers.rfc822 import read_message_tree

#: Largest single message read from an mbox, in bytes; a larger one is reported.
MAX_MBOX_MESSAGE_BYTES = 128 * 1024 * 1024

_FROM_LINE = re.compile(rb"^From \S*")
_ESCAPED_FROM = re.compile(rb"^>(>*From )")
#: A postmark: "From", the sender, then a date with a time in it (asctime's
#: ``Mon Jan  1 10:00:00 2024`` and the variants writers use).
_POSTMARK = re.compile(rb"From \S+\s.*\b\d\d?:\d\d")
#: A header field line (RFC 5322 field name, then a colon).
_HEADER_FIELD = re.compile(rb"^[!-9;-~]+:")


@register
class MboxReader(Reader):
    """Messages separated by ``From `` lines; ``>From`` quoting undone (mboxrd)."""

    format = "mbox"
    priority = 80

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        text = head.lstrip(b"\r\n\xef\xbb\xbf")
        if not _FROM_LINE.match(text):
            return False
        rest = text.split(b"\n", 1)[1] if b"\n" in text else b""
        return b":" in rest.split(b"\n", 1)[0]

    def read(self, evidence: EvidenceFile) -> Iterator[ReadEvent]:
        index = 0
        for index, raw, oversized in _split(evidence.path):
            item = f"message {index}"
            if oversized:
                yield ItemFailure(
                    evidence.path, item, f"larger than {MAX_MBOX_MESSAGE_BYTES} bytes; not read"
                )
                continue
            record = MessageRecord(
                evidence_path=evidence.path,
                evidence_sha256=evidence.sha256,
                evidence_format="mbox",
                item_id=item,
            )
            yield from read_message_tree(
                record, raw, lambda item, reason: ItemFailure(evidence.path, item, reason)
            )


def _split(path: str) -> Iterator[tuple[int, bytes, bool]]:
    """Yield ``(index, message bytes, oversized)`` for each message, reading line by line.

    A line starting "From " separates messages when it is a postmark (``From`` and the
    sender, then a date with its time) and follows an empty line (as every writer puts
    one; writers escape such lines in bodies as ">From "), or when the line after it is
    a header field (messages run together with no empty line between them). Any other
    "From " line ("From now on, please pay...", in a body that was not escaped) is
    body text.
    """
    index = -1
    lines: list[bytes] = []
    size = 0
    oversized = False
    after_empty = True  # the start of the file counts as an empty line
    held: bytes | None = None  # a "From " line inside text: the next line decides
    with open(path, "rb") as handle:
        for line in handle:
            if held is not None:
                separator, held_line, held = bool(_HEADER_FIELD.match(line)), held, None
                if separator:
                    yield index, b"".join(lines), oversized
                    index += 1
                    lines, size, oversized = [], 0, False
                else:
                    size, oversized = _add(lines, held_line, size, oversized)
            if line.startswith(b"From ") and (index < 0 or _POSTMARK.match(line)):
                if index >= 0 and not after_empty:
                    held, after_empty = line, False
                    continue
                if index >= 0:
                    yield index, b"".join(lines), oversized
                index += 1
                lines, size, oversized = [], 0, False
                after_empty = False
                continue
            after_empty = line == b"\n" or line == b"\r\n"
            if index >= 0:
                size, oversized = _add(lines, line, size, oversized)
    if held is not None:
        size, oversized = _add(lines, held, size, oversized)
    if index >= 0:
        yield index, b"".join(lines), oversized


def _add(lines: list[bytes], line: bytes, size: int, oversized: bool) -> tuple[int, bool]:
    """Add ``line`` to the message being split: its new size, and whether it is now
    over :data:`MAX_MBOX_MESSAGE_BYTES` (then nothing more is kept)."""
    size += len(line)
    if size > MAX_MBOX_MESSAGE_BYTES:
        lines.clear()
        return size, True
    if not oversized:
        # Only a line that starts with ">" can be an escaped "From " line.
        lines.append(_ESCAPED_FROM.sub(rb"\1", line) if line[:1] == b">" else line)
    return size, oversized
