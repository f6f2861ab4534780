"""Rows sorted on disk: a bounded buffer in memory, sorted runs spilled to files, merged.

The suspicious-events timeline must come out sorted by time, yet a large case can give
millions of rows; keeping them all in memory would make memory grow with the evidence.
"""

from __future__ import annotations

import heapq
import json
import os
from collections.abc import Iterator
from pathlib import Path

#: Rows kept in memory before a sorted run is written out (about 5 MB of typical rows:
#: a larger buffer makes the peak memory of a large case grow with it).
BUFFER_ROWS = 10_000


class SortedSpill:
    """Collects rows (tuples of strings) and yields them back in sorted order."""

    def __init__(self, folder: Path, name: str, buffer_rows: int = BUFFER_ROWS) -> None:
        self.folder = folder
        self.name = name
        self.buffer_rows = buffer_rows
        self._buffer: list[tuple[str, ...]] = []
        self._runs: list[Path] = []

    def add(self, row: tuple[str, ...]) -> None:
        """Keep one row; spills a sorted run to disk when the buffer is full."""
        self._buffer.append(row)
        if len(self._buffer) >= self.buffer_rows:
            self._spill()

    def _spill(self) -> None:
        path = self.folder / f".{self.name}.run{len(self._runs)}.partial"
        with path.open("w", encoding="utf-8", errors="backslashreplace") as handle:
            for row in sorted(self._buffer):
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._runs.append(path)
        self._buffer = []

    def __iter__(self) -> Iterator[tuple[str, ...]]:
        """All rows in sorted order (read once); spilled runs are removed afterwards."""
        handles = [path.open(encoding="utf-8") for path in self._runs]
        try:
            runs = [(tuple(json.loads(line)) for line in handle) for handle in handles]
            yield from heapq.merge(sorted(self._buffer), *runs)
        finally:
            for handle in handles:
                handle.close()
            self.discard()

    def discard(self) -> None:
        """Remove the spilled runs (an interrupted run leaves no stray files)."""
        for path in self._runs:
            if path.exists():
                os.unlink(path)
        self._runs = []
        self._buffer = []
