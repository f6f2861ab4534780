"""The conversation store of the thread-intrusion rule: in memory, then on disk in SQLite.

The rule must see every message before it can put a conversation in order, so it keeps a
record per message until the end of the run. Up to ``spill_messages`` records stay in
memory; past that they move to a SQLite database in a temporary folder, and the records of
each conversation come back from it sorted, one conversation at a time. What stays in
memory whatever the size of the case is the union-find of the conversation keys: one
8-byte integer per distinct link key (the keys themselves are on disk once spilled).

The temporary folder is removed by :meth:`ConversationStore.close`, which the rule calls
at the end of ``finish`` and the rule set calls when a run stops early; a store that is
never closed removes it when it is collected or the interpreter exits.
"""

from __future__ import annotations

import logging
import pickle
import shutil
import sqlite3
import tempfile
import weakref
from array import array
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import groupby
from pathlib import Path
from typing import Generic, TypeVar

from inbec_export.model import MessageRef

logger = logging.getLogger(__name__)

#: Records kept in memory before the store moves to disk (about 1.5 KB each: 15 MB).
DEFAULT_SPILL_MESSAGES = 10_000

#: Page cache of the SQLite database, in KiB (a negative ``cache_size`` is in KiB).
SQLITE_CACHE_KIB = 8_192

#: Rows read or written per batch when moving records and grouping them on disk.
BATCH_ROWS = 5_000

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

_SCHEMA = """
CREATE TABLE keys (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, uses INTEGER NOT NULL);
CREATE TABLE messages (
    seq INTEGER PRIMARY KEY, first_key INTEGER NOT NULL, undated INTEGER NOT NULL,
    stamp INTEGER NOT NULL, doc_id TEXT NOT NULL, data BLOB NOT NULL
);
CREATE TABLE groups (
    root INTEGER NOT NULL, undated INTEGER NOT NULL, stamp INTEGER NOT NULL,
    doc_id TEXT NOT NULL, seq INTEGER NOT NULL
);
"""

_UPSERT_KEY = (
    "INSERT INTO keys (id, key, uses) VALUES (?, ?, 1) "
    "ON CONFLICT (key) DO UPDATE SET uses = uses + 1 RETURNING id"
)

_ORDERED = (
    "SELECT g.root, m.data FROM groups AS g JOIN messages AS m ON m.seq = g.seq "
    "ORDER BY g.root, g.undated, g.stamp, g.doc_id"
)

T = TypeVar("T")

#: Sort key of a message in its conversation: undated last, then time, then document id.
SortKey = tuple[int, int, str]


def sort_key(ref: MessageRef) -> SortKey:
    """The order of :func:`~inbec_export.detections._common.ref_order` as integers, which
    SQLite sorts the same way (times in microseconds since 1970, UTC; naive times as UTC)."""
    if ref.timestamp is None:
        return (1, 0, ref.doc_id)
    stamp = ref.timestamp
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return (0, (stamp - _EPOCH) // _MICROSECOND, ref.doc_id)


def _remove(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)


class ConversationStore(Generic[T]):
    """Records of messages grouped by the union of their link keys, kept in memory up to
    ``spill_messages`` records and in a temporary SQLite database beyond.

    Args:
        spill_messages: records kept in memory before the store moves to disk.
        spill_dir: where the temporary folder is made (None: the system's temporary
            folder).
    """

    def __init__(
        self, spill_messages: int = DEFAULT_SPILL_MESSAGES, spill_dir: Path | None = None
    ) -> None:
        self.spill_messages = spill_messages
        self.spill_dir = spill_dir
        self.folder: Path | None = None
        self._parent = array("q")
        self._key_ids: dict[str, int] = {}
        self._uses: list[int] = []
        self._records: list[tuple[int, SortKey, T]] = []
        self._db: sqlite3.Connection | None = None
        self._cleanup: weakref.finalize[[Path], ConversationStore[T]] | None = None

    @property
    def on_disk(self) -> bool:
        """True once the records have moved to the SQLite database."""
        return self._db is not None

    def add(self, keys: list[str], order: SortKey, record: T) -> None:
        """Keep ``record``, whose conversation is the union of ``keys`` (at least one).

        A key given twice counts twice in :meth:`uses`.
        """
        ids = [self._key_id(key) for key in keys]
        for other in ids[1:]:
            self._union(ids[0], other)
        if self._db is not None:
            self._db.execute(
                "INSERT INTO messages (first_key, undated, stamp, doc_id, data) "
                "VALUES (?, ?, ?, ?, ?)",
                (ids[0], *order, pickle.dumps(record, pickle.HIGHEST_PROTOCOL)),
            )
            return
        self._records.append((ids[0], order, record))
        if len(self._records) >= self.spill_messages:
            self._spill()

    def uses(self, key: str) -> int:
        """How many times ``key`` was given to :meth:`add`."""
        if self._db is None:
            key_id = self._key_ids.get(key)
            return 0 if key_id is None else self._uses[key_id]
        row = self._db.execute("SELECT uses FROM keys WHERE key = ?", (key,)).fetchone()
        return 0 if row is None else int(row[0])

    def conversations(self) -> Iterator[Iterator[T]]:
        """Each conversation's records, sorted by their order key (read once)."""
        if self._db is None:
            records = sorted(self._records, key=lambda item: (self._find(item[0]), item[1]))
            for _, members in groupby(records, key=lambda item: self._find(item[0])):
                yield (record for _, _, record in members)
            return
        self._group_on_disk()
        rows = self._db.execute(_ORDERED)
        for _, rows_of_one in groupby(rows, key=lambda row: int(row[0])):
            yield (pickle.loads(row[1]) for row in rows_of_one)

    def close(self) -> None:
        """Forget every record and remove the temporary folder (safe to call twice)."""
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._cleanup is not None:
            self._cleanup()
            self._cleanup = None
        self._records = []
        self._key_ids = {}
        self._uses = []
        self._parent = array("q")

    def _key_id(self, key: str) -> int:
        new_id = len(self._parent)
        if self._db is not None:
            (key_id,) = self._db.execute(_UPSERT_KEY, (new_id, key)).fetchone()
        else:
            key_id = self._key_ids.setdefault(key, new_id)
            if key_id == new_id:
                self._uses.append(0)
            self._uses[key_id] += 1
        if key_id == new_id:
            self._parent.append(new_id)
        return int(key_id)

    def _find(self, key_id: int) -> int:
        parent = self._parent
        root = key_id
        while parent[root] != root:
            root = parent[root]
        while key_id != root:
            parent[key_id], key_id = root, parent[key_id]
        return root

    def _union(self, left: int, right: int) -> None:
        left_root, right_root = self._find(left), self._find(right)
        if left_root != right_root:
            low, high = sorted((left_root, right_root))
            self._parent[high] = low

    def _spill(self) -> None:
        """Move the keys and records to a new SQLite database in a temporary folder."""
        self.folder = Path(tempfile.mkdtemp(prefix="inbec-conversations-", dir=self.spill_dir))
        self._cleanup = weakref.finalize(self, _remove, self.folder)
        db = sqlite3.connect(self.folder / "conversations.sqlite3", isolation_level=None)
        db.execute("PRAGMA journal_mode = OFF")
        db.execute("PRAGMA synchronous = OFF")
        db.execute(f"PRAGMA cache_size = -{SQLITE_CACHE_KIB}")
        db.executescript(_SCHEMA)
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO keys (id, key, uses) VALUES (?, ?, ?)",
            ((key_id, key, self._uses[key_id]) for key, key_id in self._key_ids.items()),
        )
        db.executemany(
            "INSERT INTO messages (first_key, undated, stamp, doc_id, data) VALUES (?, ?, ?, ?, ?)",
            (
                (first, *order, pickle.dumps(record, pickle.HIGHEST_PROTOCOL))
                for first, order, record in self._records
            ),
        )
        self._db = db
        logger.info(
            "conversation records moved to disk after %d messages: %s",
            len(self._records),
            self.folder,
        )
        self._records, self._key_ids, self._uses = [], {}, []

    def _group_on_disk(self) -> None:
        """Write each record's conversation root beside its order key, then index them."""
        assert self._db is not None
        rows = self._db.execute("SELECT first_key, undated, stamp, doc_id, seq FROM messages")
        while batch := rows.fetchmany(BATCH_ROWS):
            self._db.executemany(
                "INSERT INTO groups (root, undated, stamp, doc_id, seq) VALUES (?, ?, ?, ?, ?)",
                [(self._find(first), *rest) for first, *rest in batch],
            )
        self._db.execute("COMMIT")
