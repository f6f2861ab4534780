"""The scale-test mbox of the sample generator: distinct messages, written by streaming."""

from __future__ import annotations

import mailbox
from pathlib import Path

from inbec_export.case import CaseContext
from inbec_export.model import MessageRecord
from inbec_export.pipeline import analyze
from inbec_export.readers import iter_evidence
from inbec_export.sample.generator import LEGIT_DOMAINS, write_large_mbox


def test_large_mbox_messages_are_distinct_and_read(tmp_path: Path) -> None:
    path = tmp_path / "large.mbox"
    size = write_large_mbox(path, 30)
    assert size == path.stat().st_size
    messages = list(mailbox.mbox(str(path)))
    assert len(messages) == 30
    ids = [message["Message-ID"] for message in messages]
    assert len(set(ids)) == 30
    # Round 2 (messages 28 and 29) gets the round number in every id it names.
    assert all(".r2@" in message_id for message_id in ids[28:])
    summary = analyze(
        [path], CaseContext(case_id="large", legit_domains=LEGIT_DOMAINS), tmp_path / "case"
    )
    assert summary["totals"]["messages_read"] == 30
    assert summary["totals"]["items_failed"] == 0


def test_large_mbox_bytes_depend_only_on_the_count(tmp_path: Path) -> None:
    write_large_mbox(tmp_path / "one.mbox", 20)
    write_large_mbox(tmp_path / "two.mbox", 20)
    assert (tmp_path / "one.mbox").read_bytes() == (tmp_path / "two.mbox").read_bytes()


def test_escaped_from_lines_of_a_body_are_given_back(tmp_path: Path) -> None:
    path = tmp_path / "escaped.mbox"
    path.write_bytes(
        b"From alice@example.com Mon Jan  1 00:00:00 2024\n"
        b"From: alice@example.com\nSubject: one\n\n"
        b">From the desk of Alice\n>>From a quote\n> a reply line\n>From\nend\n"
        b"From bob@example.com Mon Jan  1 00:00:00 2024\n"
        b"From: bob@example.com\nSubject: two\n\nsecond body\n"
    )
    events = [e for e in iter_evidence([path]) if isinstance(e, MessageRecord)]
    assert [e.subject for e in events] == ["one", "two"]
    assert events[0].body.splitlines() == [
        "From the desk of Alice",
        ">From a quote",
        "> a reply line",
        ">From",
        "end",
    ]
    assert events[1].body.strip() == "second body"
