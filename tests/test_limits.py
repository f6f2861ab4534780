"""Oversized and deeply nested evidence: bounded memory, every cut stated in the record."""

from __future__ import annotations

import json
import subprocess
import sys
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from inbec_export.case import CaseContext
from inbec_export.model import MessageRecord
from inbec_export.pipeline import analyze
from inbec_export.readers import MAX_RECIPIENTS_PER_FIELD, MAX_SUBJECT_CHARS, iter_evidence
from inbec_export.readers.rfc822 import MAX_EMBED_DEPTH, MAX_HEADER_FIELDS

#: Peak resident memory allowed for analyzing the four oversized messages, in bytes. The
#: messages total about 15 MB; the interpreter and libraries alone take about 100 MB.
PEAK_RSS_LIMIT_BYTES = 400 * 1024 * 1024

_BASE = (
    b"From: Ana Silva <ana.silva@acme-corp.com>\r\n"
    b"To: bob@globex-ind.com\r\n"
    b"Date: Mon, 1 Apr 2024 10:00:00 +0000\r\n"
    b"Message-ID: <limit@acme-corp.com>\r\n"
)


def _oversized(folder: Path) -> dict[str, Path]:
    """A 10 MB header block, 100,000 recipients, a 1 MB subject, messages nested 60 deep."""
    folder.mkdir()
    files = {name: folder / f"{name}.eml" for name in ("header", "recipients", "subject")}
    filler = b"".join(b"X-Filler-%d: %s\r\n" % (i, b"a" * 90) for i in range(100_000))
    files["header"].write_bytes(_BASE + b"Subject: big header\r\n" + filler + b"\r\nbody\r\n")
    recipients = b", ".join(b"user%d@globex-ind.com" % i for i in range(100_000))
    files["recipients"].write_bytes(
        _BASE.replace(b"To: bob@globex-ind.com", b"To: " + recipients)
        + b"Subject: many\r\n\r\nbody\r\n"
    )
    files["subject"].write_bytes(
        _BASE + b"Subject: =?utf-8?q?" + b"A" * 1_000_000 + b"?=\r\n\r\nbody\r\n"
    )
    nested = _BASE + b"Subject: level 60\r\n\r\ninnermost\r\n"
    for level in range(59, -1, -1):
        nested = (
            _BASE
            + b"Subject: level %d\r\nMIME-Version: 1.0\r\nContent-Type: message/rfc822\r\n\r\n"
            % level
            + nested
        )
    files["nested"] = folder / "nested.eml"
    files["nested"].write_bytes(nested)
    return files


def _documents(case_dir: Path) -> list[dict[str, Any]]:
    lines = (case_dir / "messages.ndjson").read_text("utf-8").splitlines()
    return [json.loads(line) for line in lines[1::2]]


def test_oversized_messages_are_cut_and_say_so(tmp_path: Path) -> None:
    files = _oversized(tmp_path / "evidence")
    out = tmp_path / "case"
    summary = analyze([tmp_path / "evidence"], CaseContext(case_id="limits"), out)
    # 3 messages plus the nested one and the 50 levels attached below it.
    assert summary["totals"]["messages_read"] == summary["totals"]["messages_written"] == 54
    by_file: dict[str, list[dict[str, Any]]] = {}
    for document in _documents(out):
        by_file.setdefault(Path(document["inbec"]["evidence"]["path"]).stem, []).append(document)

    [header] = by_file["header"]
    assert header["inbec"]["warnings"] == [
        f"{100_000 + 5 - MAX_HEADER_FIELDS} header field(s) past the first "
        f"{MAX_HEADER_FIELDS} dropped"
    ]
    assert header["email"]["from"]["address"] == ["ana.silva@acme-corp.com"]

    [many] = by_file["recipients"]
    assert len(many["email"]["to"]["address"]) == MAX_RECIPIENTS_PER_FIELD
    assert (
        many["email"]["to"]["address"][-1] == f"user{MAX_RECIPIENTS_PER_FIELD - 1}@globex-ind.com"
    )
    assert many["inbec"]["warnings"] == [
        f"to has 100000 addresses; only the first {MAX_RECIPIENTS_PER_FIELD} kept"
    ]

    [subject] = by_file["subject"]
    assert subject["email"]["subject"] == "A" * MAX_SUBJECT_CHARS
    assert subject["inbec"]["warnings"] == [
        f"subject of 1000000 characters cut to {MAX_SUBJECT_CHARS}"
    ]

    nested = by_file["nested"]
    assert [d["email"]["subject"] for d in nested] == [
        f"level {n}" for n in range(MAX_EMBED_DEPTH + 1)
    ]
    deepest = nested[-1]
    assert deepest["inbec"]["evidence"]["item_id"] == "message" + "/attachment 0" * 50
    assert deepest["inbec"]["evidence"]["parent_item_id"] == "message" + "/attachment 0" * 49
    assert deepest["inbec"]["warnings"] == [
        f"1 attached message(s) nested deeper than {MAX_EMBED_DEPTH} levels; not read"
    ]
    assert all("warnings" not in d["inbec"] for d in nested[:-1])
    assert files["nested"].stat().st_size < 20_000


def test_oversized_messages_take_bounded_memory(tmp_path: Path) -> None:
    _oversized(tmp_path / "evidence")
    # VmHWM of the process's own memory map: ru_maxrss would also count the test
    # runner's memory, which Linux carries over into a forked child across exec.
    script = (
        "import sys\n"
        "from inbec_export.cli import main\n"
        "try:\n"
        "    main()\n"
        "finally:\n"
        "    status = open('/proc/self/status').read().split('VmHWM:')[1].split()[0]\n"
        "    sys.stderr.write(f'peak-kib {status}\\n')\n"
    )
    command = [sys.executable, "-c", script, "analyze", str(tmp_path / "evidence")]
    command += ["-q", "-o", str(tmp_path / "case")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr
    peak_kib = int(result.stderr.rsplit("peak-kib ", 1)[1].split()[0])
    assert 0 < peak_kib * 1024 < PEAK_RSS_LIMIT_BYTES


def _forwarded_as_attachment() -> bytes:
    original = EmailMessage()
    original["From"] = "Marco Bellini <marco.bellini@globex-lnd.com>"
    original["To"] = "ap@acme-corp.com"
    original["Subject"] = "Updated bank details"
    original["Date"] = "Mon, 8 Apr 2024 13:37:00 +0000"
    original["Message-ID"] = "<original@globex-lnd.com>"
    original.set_content("Please pay invoice INV-2024-0417 to the new account.\n")
    original.add_attachment(
        b"%PDF-1.4 fake", maintype="application", subtype="pdf", filename="bank-letter.pdf"
    )
    report = EmailMessage()
    report["From"] = "ap@acme-corp.com"
    report["To"] = "security@acme-corp.com"
    report["Subject"] = "FW: suspicious payment request"
    report["Date"] = "Mon, 8 Apr 2024 14:00:00 +0000"
    report["Message-ID"] = "<report@acme-corp.com>"
    report.set_content("See the attached message.\n")
    report.add_attachment(original)
    return report.as_bytes()


@pytest.mark.parametrize("container", ["eml", "mbox"])
def test_a_message_forwarded_as_attachment_is_a_record_of_its_own(
    tmp_path: Path, container: str
) -> None:
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    raw = _forwarded_as_attachment()
    if container == "eml":
        (evidence / "report.eml").write_bytes(raw)
        parent_item = "message"
    else:
        (evidence / "reports.mbox").write_bytes(
            b"From ap@acme-corp.com Mon Apr  8 14:00:00 2024\n"
            + raw.replace(b"\r\n", b"\n")
            + b"\n"
        )
        parent_item = "message 0"
    out = tmp_path / "case"
    context = CaseContext(case_id="fwd", legit_domains=("acme-corp.com", "globex-ind.com"))
    summary = analyze([evidence], context, out)
    assert summary["totals"]["messages_written"] == 2
    report, original = _documents(out)
    assert report["email"]["subject"] == "FW: suspicious payment request"
    assert [a["file"]["mime_type"] for a in report["email"]["attachments"]] == ["message/rfc822"]
    # The attached message's text and attachment are its own, not the report's.
    assert "new account" not in report["message"]
    assert original["email"]["subject"] == "Updated bank details"
    assert original["email"]["from"]["address"] == ["marco.bellini@globex-lnd.com"]
    assert original["email"]["message_id"] == "original@globex-lnd.com"
    assert [a["file"]["name"] for a in original["email"]["attachments"]] == ["bank-letter.pdf"]
    assert original["inbec"]["evidence"]["item_id"] == f"{parent_item}/attachment 0"
    assert original["inbec"]["evidence"]["parent_item_id"] == parent_item
    # The lookalike sender inside the attachment is found.
    assert summary["lookalike_domains"][0]["domain"] == "globex-lnd.com"


def test_corpus_list_messages_with_attached_messages(corpus_dir: Path) -> None:
    mbox = corpus_dir / "mbox" / "mboxtest_shapelib_list.mbox"
    attached = [
        (e.item_id, e.parent_item_id, e.subject, e.message_id)
        for e in iter_evidence([mbox])
        if isinstance(e, MessageRecord) and e.parent_item_id is not None
    ]
    assert attached == [
        (
            "message 100/attachment 0",
            "message 100",
            "shapelib built on macosx, changes to makefile",
            "9846ABD2-2E90-11D9-8E9A-000D939BCD8A@stanford.edu",
        ),
        (
            "message 388/attachment 0",
            "message 388",
            "Shapelib Digest, Vol 42, Issue 1",
            "200710251602.l9PG26Id012388@duke.maptools.org",
        ),
    ]
