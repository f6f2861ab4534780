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
    """Yield ``(index, message bytes, oversized)`` for each message, reading line by line."""
    index = -1
    lines: list[bytes] = []
    size = 0
    oversized = False
    with open(path, "rb") as handle:
        for line in handle:
            # Like Python's mailbox module, every line starting "From " separates
            # messages; writers escape such lines in bodies as ">From ".
            if line.startswith(b"From "):
                if index >= 0:
                    yield index, b"".join(lines), oversized
                index += 1
                lines, size, oversized = [], 0, False
                continue
            if index < 0:
                continue
            size += len(line)
            if size > MAX_MBOX_MESSAGE_BYTES:
                oversized = True
                lines = []
                continue
            if not oversized:
                # Only a line that starts with ">" can be an escaped "From " line.
                lines.append(_ESCAPED_FROM.sub(rb"\1", line) if line[:1] == b">" else line)
    if index >= 0:
        yield index, b"".join(lines), oversized
