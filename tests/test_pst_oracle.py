"""The PST reader against an independent reader: ``readpst`` (libpst, Debian pst-utils).

For every PST of the corpus, the mail found by :class:`PstReader` must match the
messages ``readpst`` writes, by Message-ID or else by (subject, time). Every difference
that remains is listed in :data:`KNOWN_DIFFERENCES` with the reason for it.

readpst is run as ``readpst -q -D -e -b -8 -j 0 -o DIR FILE``: ``-e`` writes one RFC 5322
file per item (``.eml`` for mail, ``.ics``/``.vcf`` for appointments and contacts), ``-D``
includes deleted items, ``-b`` skips RTF bodies, ``-8`` writes UTF-8, ``-j 0`` runs in one
process. Its Date header is the transport Date or, without headers, the client submit
time, to the second; its Message-ID comes from the headers only.
"""

from __future__ import annotations

import email
import email.policy
import shutil
import subprocess
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import CORPUS_DIR, in_ci

from inbec_export.model import EvidenceFile, MessageRecord, NonMailItem
from inbec_export.readers import headers as h
from inbec_export.readers.base import hash_file
from inbec_export.readers.pst import PstReader

pytestmark = [pytest.mark.oracle, pytest.mark.corpus]

#: How one message is compared: ("id", Message-ID) or ("subject", subject, time).
Key = tuple[str, ...]

_NO_TIME = "-"

#: Differences explained file by file: keys only we find, and keys only readpst writes.
KNOWN_DIFFERENCES: dict[str, tuple[Counter[Key], Counter[Key]]] = {
    # readpst writes an empty stub (From MAILER-DAEMON, no subject, no date) for a hidden
    # item associated with the store's top folder; associated contents are settings, not
    # mail, and libpff does not list them.
    "aranetic_flags_jane_doe.pst": (Counter(), Counter({("subject", "", _NO_TIME): 1})),
    "aranetic_multiple_to_cc.pst": (Counter(), Counter({("subject", "", _NO_TIME): 1})),
    # readpst only exports e-mail items, and skips posts (IPM.Post) without a word.
    "pst-exp_test_ansi.pst": (
        Counter({("subject", "Post", "2008-07-09 18:11:05"): 1}),
        Counter(),
    ),
    "pst-exp_test_unicode.pst": (
        Counter(
            {
                ("subject", "Test", "2008-07-09 18:09:06"): 1,
                ("subject", "Post", "2008-07-09 18:11:14"): 1,
            }
        ),
        Counter(),
    ),
    # libpst 0.6.76 takes the two "Test1" messages (in FolderWithSingleMessage and
    # FolderWithSingleUnreadMessage) for folders and writes neither. (Run in parallel,
    # without -j 0, it then walks the store again from them into "user1@test.lab1".)
    "tghanem_user1@test.lab.pst": (
        Counter({("subject", "Test1", "2017-06-06 19:23:43"): 2}),
        Counter(),
    ),
}


def _corpus_psts() -> list[str]:
    folder = CORPUS_DIR / "pst"
    return sorted(path.name for path in folder.glob("*.pst")) if folder.is_dir() else []


@pytest.fixture(scope="module")
def readpst() -> str:
    """Path of readpst; skips when absent, except under CI where it must be installed."""
    found = shutil.which("readpst")
    if found is None:
        if in_ci():
            pytest.fail("readpst (Debian package pst-utils) is required under CI")
        pytest.skip("readpst (Debian package pst-utils) is not installed")
    return found


def _subject(value: str | None) -> str:
    decoded = h.decode_subject(value)[0] if value else None
    return " ".join((decoded or "").split())


def _time(value: datetime | None) -> str:
    if value is None:
        return _NO_TIME
    return value.astimezone(UTC).replace(microsecond=0, tzinfo=None).isoformat(sep=" ")


def _readpst_messages(readpst: str, pst: Path, out: Path) -> tuple[list[tuple[Key, Key]], int]:
    """Run readpst; return (id key, subject key) per .eml it wrote, and its .ics/.vcf count."""
    out.mkdir()
    subprocess.run(
        [readpst, "-q", "-D", "-e", "-b", "-8", "-j", "0", "-o", str(out), str(pst)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    messages: list[tuple[Key, Key]] = []
    for path in sorted(out.rglob("*.eml")):
        with path.open("rb") as handle:
            parsed = email.message_from_binary_file(handle, policy=email.policy.compat32)
        message_id = h.parse_message_id(parsed.get("Message-ID"))
        date = h.parse_date(parsed.get("Date"))
        subject_key: Key = ("subject", _subject(parsed.get("Subject")), _time(date))
        messages.append((("id", message_id) if message_id else subject_key, subject_key))
    other = sum(1 for p in out.rglob("*") if p.suffix in (".ics", ".vcf"))
    return messages, other


def _our_messages(pst: Path) -> tuple[list[tuple[Key, Key]], int]:
    size, sha256 = hash_file(pst)
    evidence = EvidenceFile(path=str(pst), format="pst", size=size, sha256=sha256)
    messages: list[tuple[Key, Key]] = []
    non_mail = 0
    for event in PstReader().read(evidence):
        if isinstance(event, NonMailItem):
            non_mail += 1
        # readpst writes an embedded message inside its parent's file, not on its own.
        if not isinstance(event, MessageRecord) or event.parent_item_id is not None:
            continue
        # The keys readpst's output allows: header Message-ID, else subject and the
        # header Date or submit time.
        subject_key: Key = (
            "subject",
            _subject(event.subject),
            _time(event.date or event.submit_time),
        )
        message_id = event.message_id if event.has_transport_headers else None
        id_key: Key = ("id", message_id) if message_id else subject_key
        messages.append((id_key, subject_key))
    return messages, non_mail


def _match(
    ours: list[tuple[Key, Key]], theirs: list[tuple[Key, Key]]
) -> tuple[Counter[Key], Counter[Key]]:
    """Pair messages by id key, the rest by subject key; return what stays unpaired."""
    paired = Counter(key for key, _ in ours) & Counter(key for key, _ in theirs)
    left: list[Counter[Key]] = []
    for side in (ours, theirs):
        budget = Counter(paired)
        rest: Counter[Key] = Counter()
        for id_key, subject_key in side:
            if budget[id_key] > 0:
                budget[id_key] -= 1
            else:
                rest[subject_key] += 1
        left.append(rest)
    return left[0] - left[1], left[1] - left[0]


def test_the_corpus_has_psts_to_compare() -> None:
    assert len(_corpus_psts()) == 16


@pytest.mark.parametrize("name", _corpus_psts())
def test_mail_matches_readpst(corpus_dir: Path, readpst: str, tmp_path: Path, name: str) -> None:
    pst = corpus_dir / "pst" / name
    theirs, their_other = _readpst_messages(readpst, pst, tmp_path / "readpst")
    ours, our_non_mail = _our_messages(pst)

    only_ours, only_theirs = _match(ours, theirs)

    expected_ours, expected_theirs = KNOWN_DIFFERENCES.get(name, (Counter(), Counter()))
    assert only_ours == expected_ours
    assert only_theirs == expected_theirs
    # readpst writes appointments and contacts as .ics/.vcf; we count those (and other
    # non-mail such as free/busy data and distribution lists) as non-mail items.
    assert their_other <= our_non_mail
