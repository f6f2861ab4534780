"""Evidence readers: find evidence files, recognise their format by content, read them.

Each format lives in its own module and registers a :class:`~.base.Reader`; importing
this package registers them all.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from inbec_export.model import EvidenceFile, ItemFailure, ReadEvent
from inbec_export.readers import eml, mbox, msg, pst  # noqa: F401  (registration)
from inbec_export.readers.base import hash_file, reader_for, readers, sniff_format

logger = logging.getLogger(__name__)

__all__ = ["FileOpened", "FileSkipped", "iter_evidence", "readers", "walk_inputs"]


@dataclass(frozen=True, slots=True)
class FileOpened:
    """An evidence file recognised, hashed and about to be read."""

    evidence: EvidenceFile


@dataclass(frozen=True, slots=True)
class FileSkipped:
    """A file that is not evidence of a known format (counted, not read)."""

    path: str
    reason: str


#: Everything :func:`iter_evidence` yields.
EvidenceEvent = FileOpened | FileSkipped | ReadEvent


def walk_inputs(inputs: Iterable[Path]) -> Iterator[Path]:
    """Yield every file under ``inputs`` (files and folders, recursively), sorted by path.

    Symbolic links to folders are not followed, so a link loop cannot trap the walk.
    """
    seen: set[str] = set()
    for root in inputs:
        if root.is_dir():
            for folder, subfolders, files in os.walk(root, followlinks=False):
                subfolders.sort()
                for name in sorted(files):
                    path = Path(folder) / name
                    if str(path) not in seen:
                        seen.add(str(path))
                        yield path
        elif str(root) not in seen:
            seen.add(str(root))
            yield root


def iter_evidence(inputs: Iterable[Path]) -> Iterator[EvidenceEvent]:
    """Read every evidence file under ``inputs``, one event at a time.

    A file that cannot be opened or read costs that file only: it becomes an
    :class:`ItemFailure` with ``item=None`` and the walk goes on.
    """
    for path in walk_inputs(inputs):
        yield from _read_file(path)


def _read_file(path: Path) -> Iterator[EvidenceEvent]:
    name = str(path)
    try:
        if not path.is_file():
            yield FileSkipped(name, "not a regular file")
            return
        format_name = sniff_format(path)
    except OSError as exc:
        yield ItemFailure(name, None, f"cannot open: {exc.strerror or exc}")
        return
    if format_name is None:
        yield FileSkipped(name, "not a PST/OST, MSG, EML or mbox file")
        return
    try:
        size, sha256 = hash_file(path)
    except OSError as exc:
        yield ItemFailure(name, None, f"cannot read: {exc.strerror or exc}")
        return
    evidence = EvidenceFile(path=name, format=format_name, size=size, sha256=sha256)
    yield FileOpened(evidence)
    reader = reader_for(format_name)()
    try:
        yield from reader.read(evidence)
    except Exception as exc:
        logger.warning("%s: reading stopped: %s", name, exc)
        yield ItemFailure(name, None, f"reading stopped: {type(exc).__name__}: {exc}")
