"""The reader interface and registry: one module per evidence format registers here."""

from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import ClassVar

from inbec_export.model import EvidenceFile, EvidenceFormat, MessageRecord, ReadEvent

#: Bytes read from the start of a file to recognise its format.
SNIFF_BYTES = 8192

#: Chunk size for hashing evidence, in bytes.
HASH_CHUNK_BYTES = 1024 * 1024


class Reader(ABC):
    """Reads one evidence format. Subclasses register with :func:`register`.

    ``sniff`` recognises the format from the file's first bytes (never its name);
    ``read`` yields one event per item and must not raise for a bad item: it yields an
    :class:`~inbec_export.model.ItemFailure` instead and goes on.
    """

    format: ClassVar[EvidenceFormat]

    #: Lower runs first; content checks that are stricter go earlier.
    priority: ClassVar[int] = 50

    #: For a reader whose library can crash or hang the process reading (and which
    #: therefore reads in a process of its own): its name in the failure that says so.
    worker_name: ClassVar[str | None] = None

    @classmethod
    @abstractmethod
    def sniff(cls, head: bytes) -> bool:
        """True if ``head`` (the first :data:`SNIFF_BYTES` of a file) is this format."""

    @classmethod
    def sniff_named(cls, head: bytes, name: str) -> bool:
        """True if ``head`` is this format given that the file is called ``name`` (a
        weaker test than :meth:`sniff`, for content too short to tell on its own)."""
        return False

    @abstractmethod
    def read(self, evidence: EvidenceFile) -> Iterator[ReadEvent]:
        """Yield the records, failures and non-mail items of ``evidence``."""

    def in_worker(self) -> Reader:
        """The reader to use in a process that reads evidence for another (a
        ``--workers`` worker): that process is already the isolation a reader with a
        :attr:`worker_name` needs, so such a reader reads in it directly."""
        return self

    def read_ahead(self, evidence: EvidenceFile) -> None:
        """Let a reader that reads in another process start on ``evidence`` now, while
        the caller still handles the files before it; :meth:`read` of the same file
        later takes what was read. Nothing by default.
        """
        return None

    def asked_ahead(self, evidence: EvidenceFile) -> bool:
        """False when :meth:`read_ahead` asked for ``evidence`` but whatever was asked is
        lost (the process that reads ahead ended on an earlier file): then the files
        after it must be asked for again, in order. True by default (nothing is asked)."""
        return True


def finish_records(
    events: Iterable[ReadEvent], finish: Callable[[MessageRecord], object] | None
) -> Iterator[object]:
    """``events`` with each record replaced by ``finish(record)`` (all as they are when
    ``finish`` is None)."""
    for event in events:
        yield finish(event) if finish is not None and isinstance(event, MessageRecord) else event


_REGISTRY: list[type[Reader]] = []


def register(reader: type[Reader]) -> type[Reader]:
    """Class decorator that adds a reader to the registry."""
    if reader not in _REGISTRY:
        _REGISTRY.append(reader)
        _REGISTRY.sort(key=lambda cls: cls.priority)
    return reader


def readers() -> list[type[Reader]]:
    """The registered readers, in sniffing order."""
    return list(_REGISTRY)


def reader_for(format_name: str) -> type[Reader]:
    """The reader class of ``format_name``."""
    for reader in _REGISTRY:
        if reader.format == format_name:
            return reader
    raise KeyError(format_name)


def sniff_format(path: Path) -> EvidenceFormat | None:
    """Recognise the evidence format of ``path`` from its content (then, for content too
    short to tell, from its content and its name), or None."""
    with path.open("rb") as handle:
        head = handle.read(SNIFF_BYTES)
    for reader in _REGISTRY:
        if reader.sniff(head):
            return reader.format
    for reader in _REGISTRY:
        if reader.sniff_named(head, path.name):
            return reader.format
    return None


def hash_file(path: Path, progress: Callable[[], None] | None = None) -> tuple[int, str]:
    """Return the size and SHA-256 of ``path``, read in chunks (evidence is opened
    read-only); ``progress`` is called after each chunk (a large file takes minutes)."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
            size += len(chunk)
            if progress is not None:
                progress()
    return size, digest.hexdigest()


_LIBYAL_PART = re.compile(r"(?:^|(?<=\. ))[a-z][a-z0-9_]*: ")


def one_line(exc: BaseException, limit: int = 300) -> str:
    """A short one-line reason from an exception, for failure lists and warnings.

    Native libyal errors (libpff) chain every function's message, innermost first after the
    outermost: keep the outermost and the innermost cause, without function names.
    """
    text = " ".join(str(exc).split())
    parts = [p.strip().rstrip(".") for p in _LIBYAL_PART.split(text) if p.strip()]
    if len(parts) > 2 and _LIBYAL_PART.match(text):
        text = f"{parts[0]}: {parts[1]}"
    return text[:limit] or type(exc).__name__


def describe(exc: BaseException) -> str:
    """``ExceptionType: one-line reason``."""
    return f"{type(exc).__name__}: {one_line(exc)}"
