"""Stand-ins for the PST worker body, used to test how the reader reports a crash."""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from pathlib import Path

from inbec_export.model import EvidenceFile, ItemFailure, NonMailItem, ReadEvent
from inbec_export.readers import pst


def two_items_then_segfault(evidence: EvidenceFile) -> Iterator[ReadEvent]:
    """Yield two non-mail items of ``evidence``, then crash the interpreter."""
    yield NonMailItem(evidence.path, "node 1", "IPM.Contact")
    yield NonMailItem(evidence.path, "node 2", "IPM.Contact")
    ctypes.string_at(0)


#: The real reader, kept before a test puts a stand-in in its place.
REAL_READ_PST_ITEMS = pst.read_pst_items


def crash_failure(path: Path) -> ItemFailure:
    """The failure the reader reports for ``path`` when it crashes as
    :func:`two_items_then_segfault` makes it."""
    return ItemFailure(
        str(path),
        None,
        "PST reader crashed (signal 11, SIGSEGV) after 2 items; the rest of the file was not read",
    )


def crash_on_names_with_crash(evidence: EvidenceFile) -> Iterator[ReadEvent]:
    """The real reader, except that a file whose name holds "crash" gives two items and
    then crashes the interpreter."""
    if "crash" in Path(evidence.path).name:
        yield from two_items_then_segfault(evidence)
    else:
        yield from REAL_READ_PST_ITEMS(evidence)


def marked_items(evidence: EvidenceFile) -> Iterator[ReadEvent]:
    """Note in ``marks/`` beside the evidence folder that reading ``evidence`` began,
    then yield three non-mail items of it."""
    path = Path(evidence.path)
    marks = path.parent.parent / "marks"
    marks.mkdir(exist_ok=True)
    (marks / path.name).write_text("begun", encoding="ascii")
    for index in range(3):
        yield NonMailItem(evidence.path, f"node {index}", "IPM.Contact")


def distinct_copy(source: Path, target: Path) -> None:
    """Copy the PST ``source`` to ``target`` with the target's name appended after its
    last page: libpff reads it as it reads the source, but its content (SHA-256) differs,
    so a run reads it as a file of its own (a copy of the same bytes is read once)."""
    target.write_bytes(source.read_bytes() + target.name.encode())
