"""Stand-ins for the PST worker body, used to test how the reader reports a crash."""

from __future__ import annotations

import ctypes
from collections.abc import Iterator

from inbec_export.model import EvidenceFile, NonMailItem, ReadEvent


def two_items_then_segfault(evidence: EvidenceFile) -> Iterator[ReadEvent]:
    """Yield two non-mail items of ``evidence``, then crash the interpreter."""
    yield NonMailItem(evidence.path, "node 1", "IPM.Contact")
    yield NonMailItem(evidence.path, "node 2", "IPM.Contact")
    ctypes.string_at(0)
