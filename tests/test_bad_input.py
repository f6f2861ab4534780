"""Damaged and hostile evidence: each problem costs one item or file, never a message or
the run. Every test here reproduces a defect that was found and fixed."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from inbec_export.case import CaseContext
from inbec_export.cli import _PlainText
from inbec_export.model import ItemFailure, MessageRecord
from inbec_export.pipeline import analyze
from inbec_export.readers import (
    FOLDER_REACHED_AGAIN,
    REACHED_AGAIN,
    FileSkipped,
    iter_evidence,
    walk_inputs,
)
from inbec_export.readers.headers import parse_date
from inbec_export.sinks.case_folder import csv_cell, strict_json
from inbec_export.sinks.spill import SortedSpill

MESSAGE = (
    b"From: CEO <ceo@acme-c0rp.com>\r\nTo: bob@acme-corp.com\r\n"
    b"Reply-To: attacker@gmail.com\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n"
    b"Subject: Wire today\r\n\r\nPay.\r\n"
)


def _records(path: Path) -> list[MessageRecord]:
    return [e for e in iter_evidence([path]) if isinstance(e, MessageRecord)]


def _summary(out: Path) -> dict[str, object]:
    summary: dict[str, object] = json.loads((out / "summary.json").read_text("utf-8"))
    return summary


def test_file_name_that_is_not_utf8_does_not_stop_the_run(tmp_path: Path) -> None:
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    odd = os.fsdecode(bytes(evidence) + b"/inv\xff.eml")
    Path(odd).write_bytes(MESSAGE)
    (evidence / "z.eml").write_bytes(MESSAGE.replace(b"Wire today", b"Second"))
    out = tmp_path / "case"
    summary = analyze([evidence], CaseContext(legit_domains=("acme-corp.com",)), out)
    assert summary["totals"]["messages_written"] == 2
    text = (out / "messages.ndjson").read_text("utf-8")
    # The undecodable byte stays recognisable, as text strict JSON parsers accept (no
    # lone surrogate, escaped or not).
    assert "inv\\\\xff.eml" in text
    for name in ("messages.ndjson", "summary.json", "timeline.jsonl"):
        content = (out / name).read_text("utf-8")
        values = (
            [json.loads(line) for line in content.splitlines()]
            if "nd" in name or (name.endswith("jsonl"))
            else [json.loads(content)]
        )
        dumped = json.dumps(values, ensure_ascii=False)
        assert not re.search("[\ud800-\udfff]", dumped), name


@pytest.mark.parametrize(
    "headers",
    [
        b"Subject: =?punycode?Q?x?= Wire\r\n",
        b"Subject: Wire\r\nContent-Type: text/plain; charset=idna\r\n",
        b"Subject: =?unicode_escape?B?XHg=?= Wire\r\nContent-Type: text/plain; charset=hex\r\n",
    ],
)
def test_sender_chosen_codec_cannot_hide_a_message(tmp_path: Path, headers: bytes) -> None:
    path = tmp_path / "p.eml"
    path.write_bytes(
        b"From: CEO <ceo@acme-c0rp.com>\r\nReply-To: attacker@gmail.com\r\n"
        + headers
        + b"\r\nPay now.\r\n"
    )
    [record] = _records(path)
    assert record.reply_to[0].address == "attacker@gmail.com"
    assert record.subject is not None and record.subject.endswith("Wire")
    assert record.body.strip() == "Pay now."


def test_header_padding_cannot_push_fields_out_of_reach(tmp_path: Path) -> None:
    recipients = ", ".join(f"user{i}@example{i % 50}.com" for i in range(100_000))
    path = tmp_path / "big.eml"
    path.write_text(
        f"From: a@x.example\r\nTo: {recipients}\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n"
        f"X-Pad: {'A' * (1100 * 1024)}\r\nReply-To: attacker@gmail.com\r\n"
        "Subject: pay now\r\n\r\nbody\r\n",
        encoding="ascii",
    )
    [record] = _records(path)
    # All 100,000 are parsed; the record keeps the first 10,000 and says so.
    assert len(record.to) == 10_000
    assert record.to[-1].address == "user9999@example49.com"
    assert "to has 100000 addresses; only the first 10000 kept" in record.warnings
    assert record.reply_to[0].address == "attacker@gmail.com"
    assert record.subject == "pay now"


def test_odd_but_real_messages_are_recognised(tmp_path: Path) -> None:
    (tmp_path / "nul.eml").write_bytes(MESSAGE.replace(b"Wire today", b"pay\x00now"))
    (tmp_path / "long.eml").write_bytes(b"X-Pad: " + b"A" * 9000 + b"\r\n" + MESSAGE)
    subjects = sorted(r.subject or "" for r in _records(tmp_path))
    assert subjects == ["Wire today", "pay\x00now"]


def test_empty_or_mislabelled_evidence_is_a_failure_not_a_skip(tmp_path: Path) -> None:
    (tmp_path / "empty.pst").write_bytes(b"")
    (tmp_path / "notes.msg").write_bytes(b"hello\n")
    (tmp_path / "notes.txt").write_bytes(b"hello\n")
    (tmp_path / "dangling.eml").symlink_to(tmp_path / "nowhere")
    events = list(iter_evidence([tmp_path]))
    failures = {Path(e.evidence_path).name: e.reason for e in events if isinstance(e, ItemFailure)}
    assert failures == {
        "dangling.eml": "broken symbolic link",
        "empty.pst": "empty file",
        "notes.msg": "named like evidence but not a PST/OST, MSG, EML or mbox file (6 bytes)",
    }
    skipped = [Path(e.path).name for e in events if isinstance(e, FileSkipped)]
    assert skipped == ["notes.txt"]


def test_unlistable_folder_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "locked").mkdir()
    (tmp_path / "locked" / "a.eml").write_bytes(MESSAGE)
    (tmp_path / "b.eml").write_bytes(MESSAGE)
    real_scandir = os.scandir

    def scandir(path: str | os.PathLike[str] = ".") -> object:
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    found = list(walk_inputs([tmp_path]))
    assert found == [
        tmp_path / "b.eml",
        ItemFailure(str(tmp_path / "locked"), None, "cannot list folder: Permission denied"),
    ]


def test_symlinked_folders_are_walked_once(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (real / "a.eml").write_bytes(MESSAGE)
    (tmp_path / "link").symlink_to(real, target_is_directory=True)
    (real / "loop").symlink_to(real, target_is_directory=True)
    walked = list(walk_inputs([tmp_path, real]))
    assert [p for p in walked if isinstance(p, Path)] == [tmp_path / "link" / "a.eml"]
    # Each way back into the folder is listed: the loop, the real name, the folder given.
    assert walked[1:] == [
        FileSkipped(str(tmp_path / "link" / "loop"), FOLDER_REACHED_AGAIN),
        FileSkipped(str(real), FOLDER_REACHED_AGAIN),
        FileSkipped(str(real), FOLDER_REACHED_AGAIN),
    ]


def test_dates_with_changed_years_are_not_trusted() -> None:
    assert parse_date("Mon, 1 Jan 0001 00:00:00 +2359") is None
    assert parse_date("1 Oct 2026") is not None
    assert parse_date("1 Oct 2026").isoformat() == "2026-10-01T00:00:00+00:00"  # type: ignore[union-attr]


def test_csv_cells_and_log_lines_are_inert() -> None:
    assert csv_cell("=cmd|' /C calc'!A0") == "'=cmd|' /C calc'!A0"
    assert csv_cell("-2+3") == "'-2+3"
    assert csv_cell("Invoice \x1b[31mred\x07") == "Invoice \\x1b[31mred\\x07"
    # A file name byte that is not UTF-8 reads as in the JSON files (see strict_json).
    assert csv_cell("inv\udcffoice.eml") == "inv\\xffoice.eml"
    assert json.loads(strict_json(json.dumps({"p": "inv\udcffoice.eml"}, ensure_ascii=False))) == {
        "p": "inv\\xffoice.eml"
    }
    record = logging.LogRecord(
        "x", logging.WARNING, "f", 1, "%s: bad", ("a\x1b]0;PWN\x07.pst",), None
    )
    assert _PlainText().filter(record)
    assert record.getMessage() == "a]0;PWN.pst: bad"


def test_sorted_spill_merges_runs_and_cleans_up(tmp_path: Path) -> None:
    spill = SortedSpill(tmp_path, "rows.csv", buffer_rows=3)
    rows = [(f"2024-01-{day:02d}", str(day)) for day in (9, 3, 7, 1, 8, 2, 6, 5, 4, 10)]
    for row in rows:
        spill.add(row)
    assert len(list(tmp_path.glob(".rows.csv.run*.partial"))) == 3
    assert list(spill) == sorted(rows)
    assert list(tmp_path.iterdir()) == []


def _mbox(path: Path, count: int) -> None:
    with path.open("wb") as handle:
        for index in range(count):
            handle.write(b"From sender@x.example Mon Jan  1 10:00:00 2024\n")
            handle.write(
                f"From: a{index}@x.example\nTo: b@acme-corp.com\nSubject: note {index}\n"
                f"Message-ID: <{index}@x.example>\nDate: Mon, 1 Jan 2024 10:00:00 +0000\n\n"
                "text\n\n".encode()
            )


#: Files of a case folder that an interrupted-then-rerun case must match byte for byte.
CASE_FILES = (
    "messages.ndjson",
    "findings.ndjson",
    "failures.ndjson",
    "timeline.csv",
    "timeline.jsonl",
    "summary.json",
)


def _start_large_run(tmp_path: Path, out: Path) -> tuple[list[str], subprocess.Popen[str]]:
    """Start ``inbec analyze`` on a 20,000-message mbox into ``out``; return its command
    and process once it is writing messages."""
    evidence = tmp_path / "big.mbox"
    _mbox(evidence, 20_000)
    command = [sys.executable, "-m", "inbec_export", "analyze", str(evidence), "-q", "-o", str(out)]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (out / "messages.ndjson.partial").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    return command, process


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_leaves_the_case_incomplete_and_a_rerun_completes(
    tmp_path: Path, signum: signal.Signals
) -> None:
    out = tmp_path / "case"
    command, process = _start_large_run(tmp_path, out)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signum
    assert f"{signum.name}: stopped; the case folder is marked incomplete" in stderr
    assert _summary(out)["status"] == "incomplete"
    # No file that looks complete: only .partial names, and the summary says incomplete.
    assert not [name for name in CASE_FILES[:-1] if (out / name).exists()]
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    summary = _summary(out)
    assert summary["status"] == "complete"
    assert summary["totals"]["messages_written"] == 20_000  # type: ignore[index]
    assert not list(out.glob("*.partial"))
    # The rerun gives exactly what an uninterrupted run gives.
    clean = tmp_path / "clean"
    command[-1] = str(clean)
    assert subprocess.run(command, capture_output=True, timeout=300).returncode == 0
    for name in CASE_FILES:
        assert (out / name).read_bytes() == (clean / name).read_bytes(), name


def test_a_second_ctrl_c_during_the_clean_up_stops_at_once_without_a_traceback(
    tmp_path: Path,
) -> None:
    out = tmp_path / "case"
    _, process = _start_large_run(tmp_path, out)
    process.send_signal(signal.SIGINT)
    time.sleep(0.005)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGINT
    assert "Traceback" not in stderr
    # Either the first signal's clean-up ended the run, or the second one did.
    assert "SIGINT: stopped" in stderr or "SIGINT again: stopped at once" in stderr
    assert _summary(out)["status"] != "complete"


def test_strict_json_replaces_lone_surrogates_only() -> None:
    assert strict_json('{"a":"plain"}') == '{"a":"plain"}'
    assert strict_json('{"a":"Grüße, 東京"}') == '{"a":"Grüße, 東京"}'
    # A file name byte that was not UTF-8, as Python's surrogateescape holds it.
    assert strict_json('{"path":"inv\udcffoice.eml"}') == '{"path":"inv\\\\xffoice.eml"}'
    # A lone surrogate of any other kind keeps its code point, written out.
    assert strict_json('{"s":"x\ud83dy é"}') == '{"s":"x\\\\ud83dy é"}'


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_while_the_command_loads_stops_it_in_one_line(
    tmp_path: Path, signum: signal.Signals
) -> None:
    evidence = tmp_path / "one.eml"
    evidence.write_bytes(b"From: a@example.com\r\nSubject: s\r\n\r\nbody\r\n")
    out = tmp_path / "case"
    command = [sys.executable, "-m", "inbec_export", "analyze", str(evidence), "-o", str(out)]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    time.sleep(0.15)  # the interpreter is up; the command line is still being imported
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert "Traceback" not in stderr
    assert process.returncode == 128 + signum
    assert stderr.strip() in (
        f"{signum.name}: stopped before the run began; nothing was written",
        f"{signum.name}: stopped; the case folder is marked incomplete",
    )


#: Runs ``inbec analyze`` (argv after the script) with a finaliser that signals the
#: process itself while the third message is prepared: the handler's exception is raised
#: inside ``__del__``, where Python drops it.
_SIGNAL_IN_FINALISER = """
import os, signal, sys, time
from inbec_export import cli
from inbec_export.prepare import MessagePreparer

class Finalised:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # the handler runs here, inside the finaliser

prepare = MessagePreparer.__call__
seen = []

def signalling(self, record):
    seen.append(record)
    if len(seen) == 3:
        Finalised()
    return prepare(self, record)

MessagePreparer.__call__ = signalling
sys.argv = ["inbec", *sys.argv[1:]]
cli.main()
"""


def test_a_ctrl_c_that_lands_in_a_finaliser_still_stops_the_run(tmp_path: Path) -> None:
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    for index in range(6):
        (evidence / f"{index}.eml").write_bytes(
            b"From: a@example.com\r\nSubject: s%d\r\n\r\nbody\r\n" % index
        )
    out = tmp_path / "case"
    arguments = ["analyze", str(evidence), "-o", str(out), "--legit", "acme-corp.com"]
    result = subprocess.run(
        [sys.executable, "-c", _SIGNAL_IN_FINALISER, *arguments],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 128 + signal.SIGINT
    assert result.stderr.strip() == "SIGINT: stopped; the case folder is marked incomplete"
    assert _summary(out)["status"] == "incomplete"


def test_a_file_given_twice_or_copied_is_read_once(tmp_path: Path) -> None:
    """The same file under another name (a link, a path spelled differently) and a copy
    of its content are each listed as skipped with the file they repeat; only the first
    is read, so no document id comes twice. One worker or two, the same events."""
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    first = evidence / "a.eml"
    first.write_bytes(MESSAGE)
    (evidence / "b-copy.eml").write_bytes(MESSAGE)
    (evidence / "c-link.eml").symlink_to(first)
    (evidence / "d-other.eml").write_bytes(MESSAGE.replace(b"Wire today", b"Other"))
    respelled = evidence / ".." / "evidence" / "a.eml"
    inputs = [evidence, first, respelled]

    single = list(iter_evidence(inputs))
    parallel = list(iter_evidence(inputs, workers=2))

    assert parallel == single
    digest = hashlib.sha256(MESSAGE).hexdigest()
    assert [e for e in single if isinstance(e, FileSkipped)] == [
        FileSkipped(
            str(evidence / "b-copy.eml"),
            f"the same content as {first} (SHA-256 {digest}): read once",
        ),
        FileSkipped(str(evidence / "c-link.eml"), REACHED_AGAIN),
        FileSkipped(str(first), REACHED_AGAIN),
        FileSkipped(str(respelled), REACHED_AGAIN),
    ]
    records = [e for e in single if isinstance(e, MessageRecord)]
    assert [(Path(r.evidence_path).name, r.subject) for r in records] == [
        ("a.eml", "Wire today"),
        ("d-other.eml", "Other"),
    ]
    out = tmp_path / "case"
    analyze(inputs, CaseContext(legit_domains=("acme-corp.com",)), out)
    summary = _summary(out)
    assert summary["totals"]["messages_written"] == 2  # type: ignore[index]
    assert summary["totals"]["files_skipped"] == 4  # type: ignore[index]
    ids = [
        json.loads(line)["create"]["_id"]
        for line in (out / "messages.ndjson").read_text("utf-8").splitlines()
        if line.startswith('{"create"')
    ]
    assert len(ids) == len(set(ids)) == 2


def test_a_file_named_eml_with_a_single_known_field_is_read(tmp_path: Path) -> None:
    (tmp_path / "sender-only.eml").write_bytes(b"From: a@acme-c0rp.com\n\nPay now.\n")
    (tmp_path / "subject-only.EML").write_bytes(b"Subject: Invoice 42\r\n\r\nsee attached\r\n")
    # Unnamed, so little is not enough to call it mail; nor is a prose file named .eml.
    (tmp_path / "notes.txt").write_bytes(b"From: a@acme-c0rp.com\n\nPay now.\n")
    (tmp_path / "prose.eml").write_bytes(b"Dear Bob, from: me\n")
    events = list(iter_evidence([tmp_path]))
    records = [e for e in events if isinstance(e, MessageRecord)]
    assert [(Path(r.evidence_path).name, r.subject) for r in records] == [
        ("sender-only.eml", None),
        ("subject-only.EML", "Invoice 42"),
    ]
    assert records[0].from_[0].address == "a@acme-c0rp.com"
    assert [e for e in events if isinstance(e, FileSkipped)] == [
        FileSkipped(str(tmp_path / "notes.txt"), "not a PST/OST, MSG, EML or mbox file")
    ]
    assert [e.evidence_path for e in events if isinstance(e, ItemFailure)] == [
        str(tmp_path / "prose.eml")
    ]


def test_damaged_base64_attachments_are_said_to_be_incomplete(tmp_path: Path) -> None:
    inner = b"From: x@evil.net\r\nSubject: inner\r\n\r\nPay to the new account\r\n"
    cut = base64.b64encode(inner)[:-2]  # a broken end: the last characters lost
    path = tmp_path / "b64.eml"
    path.write_bytes(
        b"From: a@example.com\r\nSubject: bad b64\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="XX"\r\n\r\n'
        b"--XX\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
        b"--XX\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        b"!!!!####\r\n"
        b"--XX\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + cut
        + b"\r\n--XX\r\nContent-Type: application/pdf\r\n"
        b'Content-Disposition: attachment; filename="inv.pdf"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0x!!!LjQK\r\n"
        # Groups of four with spaces between them: RFC 2045 ignores the spaces.
        b"--XX\r\nContent-Type: application/pdf\r\n"
        b'Content-Disposition: attachment; filename="good.pdf"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\nJVBE Ri0x LjQK\r\n--XX--\r\n"
    )
    records = _records(path)
    outer, attached = records
    assert outer.warnings == [
        "attached message in base64 is damaged (8 characters outside the alphabet); read "
        "from the 0 bytes the rest decodes to",
        # 60 bytes in 80 characters, cut to 78: 19 whole groups and 2 characters, 58 bytes.
        "attached message in base64 is damaged (a broken end); read from the 58 bytes the "
        "rest decodes to",
        "attachment 'inv.pdf': its base64 content is damaged (3 characters outside the "
        "alphabet); the size and SHA-256 are those of the 9 bytes the rest decodes to",
    ]
    pdf = hashlib.sha256(b"%PDF-1.4\n").hexdigest()
    assert [(a.name, a.size, a.sha256) for a in outer.attachments[2:]] == [
        ("inv.pdf", 9, pdf),
        ("good.pdf", 9, pdf),
    ]
    # What decodes of the cut attached message is read: its sender is not lost.
    assert (attached.from_[0].address, attached.subject) == ("x@evil.net", "inner")


def test_an_unescaped_from_line_inside_a_paragraph_is_body_text(tmp_path: Path) -> None:
    """A postmark ("From", sender, date and time) separates messages after an empty
    line, or when a header field follows it (messages run together); any other "From "
    line is the body's."""
    path = tmp_path / "loose.mbox"
    path.write_bytes(
        b"From alice@example.com Mon Jan  1 10:00:00 2024\n"
        b"From: alice@example.com\nSubject: one\n\n"
        b"Hello,\nFrom nobody's point of view this is fine.\nBye\n\n"
        b"From bob@example.com Mon Jan  1 11:00:00 2024\n"
        b"From: bob@example.com\nSubject: two\n\nBody two\n"
        b"From carol@example.com Mon Jan  1 12:00:00 2024\n"
        b"From: carol@example.com\nSubject: three\n\nBody three\n"
        b"From the desk of Carol\n\n"
        b"From now on, please pay invoice 4471 to our new account.\nTel: +1 555 0100\n"
    )
    records = _records(path)
    assert [(r.item_id, r.subject) for r in records] == [
        ("message 0", "one"),
        ("message 1", "two"),
        ("message 2", "three"),
    ]
    assert records[0].body == "Hello,\nFrom nobody's point of view this is fine.\nBye\n\n"
    # Not postmarks (no date and time): body text, after an empty line or before a
    # line that looks like a header field alike.
    assert records[2].body == (
        "Body three\nFrom the desk of Carol\n\n"
        "From now on, please pay invoice 4471 to our new account.\nTel: +1 555 0100\n"
    )
