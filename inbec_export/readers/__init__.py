"""Evidence readers: find evidence files, recognise their format by content, read them.

Each format lives in its own module and registers a :class:`~.base.Reader`; importing
this package registers them all.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar, overload

from inbec_export.case import is_case_folder
from inbec_export.model import EvidenceFile, ItemFailure, MessageRecord, ReadEvent
from inbec_export.readers import eml, mbox, msg, pst  # noqa: F401  (registration)
from inbec_export.readers.base import (
    Reader,
    describe,
    finish_records,
    hash_file,
    reader_for,
    readers,
    sniff_format,
)
from inbec_export.readers.isolation import MAX_AHEAD, worker_session

logger = logging.getLogger(__name__)

#: What ``prepare`` makes of a record in :func:`iter_evidence`.
_Prepared = TypeVar("_Prepared")

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


#: Name endings of evidence files: such a file that is empty or of no known format is a
#: failure worth a line (a damaged or renamed PST), not a quietly skipped file.
EVIDENCE_SUFFIXES = (".pst", ".ost", ".msg", ".eml", ".mbox", ".mbx")


#: Why a file reached again in a walk (named twice, through a link) is not read again.
REACHED_AGAIN = "the same file as one given before (under another name or a link): read once"
#: Why a folder reached again in a walk (named twice, a link to it, a link loop) is not
#: walked again.
FOLDER_REACHED_AGAIN = (
    "the same folder as one walked before (under another name or a link): walked once"
)


def walk_inputs(
    inputs: Iterable[Path], own_case: Path | None = None
) -> Iterator[Path | ItemFailure | FileSkipped]:
    """Yield every file under ``inputs`` (files and folders, recursively), sorted by path,
    an :class:`ItemFailure` for each folder that cannot be listed, and a
    :class:`FileSkipped` for what is not read: a file reached again (named twice, through
    a symbolic link, by a path spelled differently) and a case folder of this tool other
    than ``own_case`` (the run's own ``--out``, passed over without a word).

    Symbolic links to folders are followed once: a folder reached again (a link loop, or
    the same folder named twice) is not walked again.
    """
    seen: set[tuple[int, int]] = set()
    walked: set[str] = set()
    own = os.path.realpath(own_case) if own_case is not None else None

    def once(path: Path) -> Path | FileSkipped:
        # A file is its device and inode, whatever the name: one system call a file.
        try:
            info = os.stat(path)
        except OSError:
            return path  # gone, or a broken link: opening it says so
        key = (info.st_dev, info.st_ino)
        if key in seen:
            return FileSkipped(str(path), REACHED_AGAIN)
        seen.add(key)
        return path

    for root in inputs:
        if not root.is_dir():
            yield once(root)
            continue
        errors: list[OSError] = []
        for folder, subfolders, files in os.walk(root, onerror=errors.append, followlinks=True):
            real = os.path.realpath(folder)
            if real in walked:
                subfolders[:] = []
                yield FileSkipped(folder, FOLDER_REACHED_AGAIN)
                continue
            walked.add(real)
            if is_case_folder(Path(folder), files):
                # A case folder is never evidence, and reading one would make every
                # re-run differ. The run's own is passed over; another (an earlier
                # case kept beside the evidence) is listed, so nothing under it goes
                # unaccounted for.
                subfolders[:] = []
                if real != own:
                    logger.warning("%s: a case folder of inbec-export; not read", folder)
                    yield FileSkipped(folder, "a case folder of inbec-export: not read as evidence")
                continue
            subfolders.sort()
            while errors:
                error = errors.pop(0)
                where = error.filename or folder
                yield ItemFailure(str(where), None, f"cannot list folder: {error.strerror}")
            for name in sorted(files):
                yield once(Path(folder) / name)
        for error in errors:
            where = error.filename or str(root)
            yield ItemFailure(str(where), None, f"cannot list folder: {error.strerror}")


def repeated(evidence: EvidenceFile, first: dict[bytes, str]) -> FileSkipped | None:
    """A :class:`FileSkipped` when a file of the same content (SHA-256) as ``evidence``
    was opened before in the run, else None; ``first`` maps each digest (its 32 bytes:
    a run may open a million small files) to the name of the first file that had it,
    and is kept up to date.

    Two copies of one evidence file hold the same items, whose documents have the same
    ids: the second is not read again, and the summary says which file it repeats.
    """
    earlier = first.setdefault(bytes.fromhex(evidence.sha256), evidence.path)
    if earlier == evidence.path:
        return None
    return FileSkipped(
        evidence.path, f"the same content as {earlier} (SHA-256 {evidence.sha256}): read once"
    )


@overload
def iter_evidence(
    inputs: Iterable[Path],
    workers: int = 1,
    prepare: None = None,
    own_case: Path | None = None,
) -> Iterator[EvidenceEvent]: ...


@overload
def iter_evidence(
    inputs: Iterable[Path],
    workers: int,
    prepare: Callable[[MessageRecord], _Prepared],
    own_case: Path | None = None,
) -> Iterator[EvidenceEvent | _Prepared]: ...


def iter_evidence(
    inputs: Iterable[Path],
    workers: int = 1,
    prepare: Callable[[MessageRecord], object] | None = None,
    own_case: Path | None = None,
) -> Iterator[object]:
    """Read every evidence file under ``inputs``, one event at a time.

    A file that cannot be opened or read costs that file only: it becomes an
    :class:`ItemFailure` with ``item=None`` and the walk goes on.

    Args:
        inputs: evidence files and folders.
        workers: files read at the same time, in worker processes
            (:mod:`~inbec_export.readers.parallel`); the events come in the same order
            whatever the number.
        prepare: applied to every record (after :func:`bound_record`) in the process
            that read it, and its result handed on in the record's place; it must be
            picklable and must not raise. None hands on the records themselves.
        own_case: the run's case folder, passed over if it lies among the inputs (see
            :func:`walk_inputs`).

    A file with the content of one read before (a copy) is not read again: a
    :class:`FileSkipped` names the first (see :func:`repeated`).
    """
    finish = _Finish(prepare)
    if workers > 1:
        from inbec_export.readers.parallel import iter_parallel

        yield from iter_parallel(inputs, workers, finish, own_case)
        return
    # One reader child serves every PST/OST file of the walk, one after another, and is
    # asked for the files ahead before the current one is handed on: it reads on while
    # this process hashes the next files and analyses what was read. When this process
    # falls behind, the child also finishes (and prepares) what it reads.
    with worker_session(pst.FinishInChild(finish)):
        ahead = _OpenedAhead(walk_inputs(inputs, own_case))
        while (current := ahead.next()) is not None:
            if isinstance(current, _Opened):
                yield from _read_opened(current, finish)
            else:
                yield current


#: Most evidence files opened (recognised and hashed) ahead of the one being read, and
#: their total size in bytes: each is asked of its reader as it is opened
#: (:meth:`Reader.read_ahead`), so that the PST reader's child goes from file to file
#: without waiting for this process. Small files go many at a time; a large one is
#: opened only when it is the next (hashing it is the slow part of opening, and nothing
#: is handed on meanwhile: 64 MiB is well under a second even from a slow disk). The
#: child is still asked for the one being read when the next is opened: one less than it
#: may be asked ahead, or the last would be refused, then asked out of turn.
READ_AHEAD_FILES = MAX_AHEAD - 1
READ_AHEAD_BYTES = 64 * 1024 * 1024


class _OpenedAhead:
    """The walk's entries (:func:`walk_inputs`), each opened and asked ahead before it
    is read, within :data:`READ_AHEAD_FILES` and :data:`READ_AHEAD_BYTES`."""

    def __init__(self, entries: Iterator[Path | ItemFailure | FileSkipped]) -> None:
        self._entries: Iterator[Path | ItemFailure | FileSkipped] | None = entries
        self._pending: deque[_Opened | ItemFailure | FileSkipped] = deque()
        self._bytes = 0
        self._first: dict[bytes, str] = {}

    def next(self) -> _Opened | ItemFailure | FileSkipped | None:
        """The next entry to read (None at the end), the ones after it opened."""
        if not self._pending:
            self._fill()
        if not self._pending:
            return None
        current = self._pending[0]
        if isinstance(current, _Opened) and not current.reader.asked_ahead(current.evidence):
            # The child that had it is gone (a crash or a stall in a file before): a new
            # one is asked for this file first, then for the others, in order.
            for opened in self._pending:
                _read_ahead(opened)
        self._pending.popleft()
        self._bytes -= _size(current)
        self._fill()
        return current

    def _fill(self) -> None:
        """Open entries until one is ahead and the limits are reached, or the walk ends."""
        while self._entries is not None and (
            not self._pending
            or (len(self._pending) < READ_AHEAD_FILES and self._bytes < READ_AHEAD_BYTES)
        ):
            entry = next(self._entries, None)
            if entry is None:
                self._entries = None
                return
            opened = _open_file(entry) if isinstance(entry, Path) else entry
            if isinstance(opened, _Opened):
                opened = repeated(opened.evidence, self._first) or opened
            self._pending.append(opened)
            self._bytes += _size(opened)
            _read_ahead(opened)


def _size(opened: _Opened | ItemFailure | FileSkipped) -> int:
    return opened.evidence.size if isinstance(opened, _Opened) else 0


class _Finish:
    """What is done to each record where it is read: :func:`bound_record`, then the
    caller's ``prepare`` (picklable, so a reading process can be given it)."""

    def __init__(self, prepare: Callable[[MessageRecord], object] | None) -> None:
        self.prepare = prepare

    def __call__(self, record: MessageRecord) -> object:
        bound_record(record)
        return record if self.prepare is None else self.prepare(record)


@dataclass(frozen=True, slots=True)
class _Opened:
    """An evidence file recognised and hashed, with the reader of its format."""

    evidence: EvidenceFile
    reader: Reader


def _read_ahead(opened: _Opened | ItemFailure | FileSkipped) -> None:
    if isinstance(opened, _Opened):
        opened.reader.read_ahead(opened.evidence)


def _read_file(
    path: Path,
    finish: Callable[[MessageRecord], object],
    in_worker: bool = False,
    progress: Callable[[], None] | None = None,
) -> Iterator[object]:
    """The events of one evidence file, each record replaced by ``finish(record)``;
    ``in_worker``: this process is a ``--workers`` worker (see :meth:`Reader.in_worker`);
    ``progress`` is called while the file is hashed."""
    opened = _open_file(path, progress)
    if isinstance(opened, _Opened):
        if in_worker:
            opened = _Opened(opened.evidence, opened.reader.in_worker())
        yield from _read_opened(opened, finish)
    else:
        yield opened


def _open_file(
    path: Path, progress: Callable[[], None] | None = None
) -> _Opened | ItemFailure | FileSkipped:
    """Recognise and hash ``path``; the failure or skip when it is not evidence to read."""
    name = str(path)
    evidence_name = path.name.lower().endswith(EVIDENCE_SUFFIXES)
    try:
        if path.is_symlink() and not path.exists():
            return ItemFailure(name, None, "broken symbolic link")
        if not path.exists():
            # Listed a moment ago (the command line refuses missing inputs): evidence
            # that went away is a failure worth a line, not a skipped file.
            return ItemFailure(name, None, "cannot open: no longer there")
        if not path.is_file():
            return FileSkipped(name, "not a regular file")
        size = path.stat().st_size
        format_name = sniff_format(path)
    except OSError as exc:
        return ItemFailure(name, None, f"cannot open: {exc.strerror or exc}")
    if format_name is None:
        if size == 0 and evidence_name:
            return ItemFailure(name, None, "empty file")
        if evidence_name:
            return ItemFailure(
                name,
                None,
                f"named like evidence but not a PST/OST, MSG, EML or mbox file ({size} bytes)",
            )
        return FileSkipped(name, "not a PST/OST, MSG, EML or mbox file")
    try:
        size, sha256 = hash_file(path, progress)
    except OSError as exc:
        return ItemFailure(name, None, f"cannot read: {exc.strerror or exc}")
    evidence = EvidenceFile(path=name, format=format_name, size=size, sha256=sha256)
    return _Opened(evidence, reader_for(format_name)())


def _read_opened(opened: _Opened, finish: Callable[[MessageRecord], object]) -> Iterator[object]:
    """:class:`FileOpened`, then the events of the file."""
    evidence = opened.evidence
    yield FileOpened(evidence)
    try:
        yield from finish_records(opened.reader.read(evidence), finish)
    except Exception as exc:
        yield ItemFailure(evidence.path, None, f"reading stopped: {describe(exc)}")


#: Longest subject kept, in characters (Outlook itself allows 255); the rest is cut and
#: the cut stated in the record's warnings.
MAX_SUBJECT_CHARS = 16 * 1024

#: Most addresses kept per address field of a record; the cut is stated in the warnings.
MAX_RECIPIENTS_PER_FIELD = 10_000

_ADDRESS_FIELDS = ("from_", "sender", "reply_to", "to", "cc", "bcc")


def bound_record(record: MessageRecord) -> MessageRecord:
    """Cut what no analyst reads but could make a document too large to index.

    Whatever the reader, a subject is kept up to :data:`MAX_SUBJECT_CHARS` characters and
    each address field up to :data:`MAX_RECIPIENTS_PER_FIELD` addresses; every cut is
    stated in ``record.warnings``, so the document says it is not the whole message.
    """
    for name in ("subject", "subject_raw"):
        value = getattr(record, name)
        if value is not None and len(value) > MAX_SUBJECT_CHARS:
            setattr(record, name, value[:MAX_SUBJECT_CHARS])
            if name == "subject":
                record.warnings.append(
                    f"subject of {len(value)} characters cut to {MAX_SUBJECT_CHARS}"
                )
    for name in _ADDRESS_FIELDS:
        addresses = getattr(record, name)
        if len(addresses) > MAX_RECIPIENTS_PER_FIELD:
            setattr(record, name, addresses[:MAX_RECIPIENTS_PER_FIELD])
            label = name.rstrip("_")
            record.warnings.append(
                f"{label} has {len(addresses)} addresses; only the first "
                f"{MAX_RECIPIENTS_PER_FIELD} kept"
            )
    return record
