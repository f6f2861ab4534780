"""Evidence and options built to break the tool: each case here once did, and must not."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from inbec_export.case import CaseContext
from inbec_export.cli import app
from inbec_export.pipeline import analyze

runner = CliRunner()

_HEAD = (
    b"From: Marco <marco@acme-c0rp.com>\r\nTo: alice@acme-corp.com\r\n"
    b"Date: Mon, 08 Apr 2024 13:37:42 +0000\r\n"
)


def _documents(case_dir: Path) -> list[dict[str, Any]]:
    lines = (case_dir / "messages.ndjson").read_text("utf-8").splitlines()
    return [json.loads(line) for line in lines[1::2]]


def _findings(case_dir: Path) -> list[dict[str, Any]]:
    lines = (case_dir / "findings.ndjson").read_text("utf-8").splitlines()
    return [json.loads(line) for line in lines[1::2]]


def _inbec(*arguments: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "inbec_export", *arguments]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)


def test_out_set_to_the_evidence_folder_is_refused_before_anything_is_written(
    tmp_path: Path,
) -> None:
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    report = evidence / "report.html"
    report.write_bytes(b"From: m@acme-c0rp.com\nTo: a@acme-corp.com\nSubject: hi\n\nwire\n")
    before = report.read_bytes()
    result = _inbec("analyze", str(evidence), "--legit", "acme-corp.com", "--out", str(evidence))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: --out {evidence} is the evidence itself: write the case folder elsewhere"
    )
    assert report.read_bytes() == before
    assert sorted(p.name for p in evidence.iterdir()) == ["report.html"]


def test_out_set_to_a_folder_of_other_files_is_refused(tmp_path: Path) -> None:
    evidence = tmp_path / "a.eml"
    evidence.write_bytes(_HEAD + b"Subject: x\r\n\r\nbody\r\n")
    other = tmp_path / "documents"
    other.mkdir()
    (other / "summary.json").write_text('{"mine": true}', encoding="utf-8")
    result = _inbec("analyze", str(evidence), "--out", str(other))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: --out {other} holds files that are not a case folder of this tool; give a "
        "new or empty folder (nothing was written)"
    )
    assert (other / "summary.json").read_text("utf-8") == '{"mine": true}'
    # A case folder of an earlier run is fine: it is written again.
    case = tmp_path / "case"
    assert _inbec("analyze", str(evidence), "-q", "--out", str(case)).returncode == 0
    assert _inbec("analyze", str(evidence), "-q", "--out", str(case)).returncode == 0


def test_header_padding_cannot_hide_the_sender(tmp_path: Path) -> None:
    message = tmp_path / "padded.eml"
    message.write_bytes(
        b"Received: from mx.acme-corp.com by mx2.acme-corp.com; Mon, 08 Apr 2024 13:37:42 "
        b"+0000\r\n"
        + b"X: a\r\n" * 5000
        + _HEAD
        + b"Reply-To: m@gmail.com\r\nSubject: new bank details\r\n\r\nPlease wire to our new "
        b"bank account, urgent.\r\n"
    )
    out = tmp_path / "case"
    summary = analyze([message], CaseContext(legit_domains=("acme-corp.com",)), out)
    [document] = _documents(out)
    assert document["email"]["from"]["address"] == ["marco@acme-c0rp.com"]
    assert document["email"]["reply_to"]["address"] == ["m@gmail.com"]
    assert document["email"]["subject"] == "new bank details"
    assert document["inbec"]["warnings"] == ["1 header field(s) past the first 5000 dropped"]
    assert summary["lookalike_domains"][0]["domain"] == "acme-c0rp.com"
    assert "freemail-reply-to" in summary["findings_by_rule"]


def _deep_mime(levels: int) -> bytes:
    parts = b"Content-Type: text/plain\r\n\r\nleaf\r\n"
    for level in range(levels):
        parts = (
            b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (level, level)
            + parts
            + b"\r\n--b%d--\r\n" % level
        )
    return (
        _HEAD + b"Subject: pay\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=top\r\n\r\n--top\r\n"
        b"Content-Type: text/plain\r\n\r\nWire to the new bank account IBAN "
        b"DE89370400440532013000 today.\r\n--top\r\nContent-Type: application/pdf\r\n"
        b"Content-Disposition: attachment; filename=inv.pdf\r\n\r\nPDFDATA\r\n--top\r\n"
        + parts
        + b"\r\n--top--\r\n"
    )


def _deep_attached(levels: int) -> bytes:
    message = _HEAD + b"Subject: level %d\r\n\r\ninnermost\r\n" % levels
    for level in range(levels - 1, -1, -1):
        message = (
            _HEAD
            + b"Subject: level %d\r\nMIME-Version: 1.0\r\nContent-Type: message/rfc822\r\n\r\n"
            % level
            + message
        )
    return message


@pytest.mark.parametrize("workers", [1, 2])
def test_thousands_of_nested_levels_keep_everything_above_the_cut(
    tmp_path: Path, workers: int
) -> None:
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    (evidence / "mime.eml").write_bytes(_deep_mime(1000))
    (evidence / "attached.eml").write_bytes(_deep_attached(400))
    out = tmp_path / "case"
    result = _inbec(
        "analyze",
        str(evidence),
        "--legit",
        "acme-corp.com",
        "-q",
        "-o",
        str(out),
        "--workers",
        str(workers),
    )
    assert result.returncode == 0, result.stderr
    documents = _documents(out)
    attached = [d for d in documents if d["inbec"]["evidence"]["path"].endswith("attached.eml")]
    assert [d["email"]["subject"] for d in attached] == [f"level {n}" for n in range(51)]
    assert attached[-1]["inbec"]["warnings"] == [
        "1 attached message(s) nested deeper than 50 levels; not read"
    ]
    [mime] = [d for d in documents if d["inbec"]["evidence"]["path"].endswith("mime.eml")]
    assert mime["inbec"]["warnings"] == ["MIME nesting deeper than 50; the deeper parts skipped"]
    assert [a["file"]["name"] for a in mime["email"]["attachments"]] == ["inv.pdf"]
    payment = [f for f in _findings(out) if f["rule"]["id"] == "payment-language"]
    assert payment[0]["inbec"]["finding"]["ibans"] == ["DE89370400440532013000"]


def test_a_base64_encoded_attached_message_is_decoded(tmp_path: Path) -> None:
    inner = b"From: x@evil.example\r\nTo: a@acme-corp.com\r\nSubject: b64 inner\r\n\r\nhello\r\n"
    message = tmp_path / "b64.eml"
    message.write_bytes(
        _HEAD + b"Subject: outer\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=z\r\n\r\n--z\r\nContent-Type: text/plain\r\n"
        b"\r\nsee attached\r\n--z\r\nContent-Type: message/rfc822\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(inner) + b"--z--\r\n"
    )
    out = tmp_path / "case"
    analyze([message], CaseContext(), out)
    outer, attached = _documents(out)
    assert outer["email"]["subject"] == "outer"
    assert attached["email"]["subject"] == "b64 inner"
    assert attached["email"]["from"]["address"] == ["x@evil.example"]
    assert "warnings" not in attached["inbec"]


def test_a_backtracking_subject_pattern_costs_one_subject(tmp_path: Path) -> None:
    message = tmp_path / "m.eml"
    message.write_bytes(_HEAD + b"Subject: " + b"a" * 5000 + b"!\r\n\r\nbody\r\n")
    out = tmp_path / "case"
    result = _inbec(
        "analyze", str(message), "-q", "-o", str(out), "--subject-pattern", r"(a|aa)+$|(\w|\w\w)+!x"
    )
    assert result.returncode == 0, result.stderr
    [document] = _documents(out)
    assert document["inbec"]["warnings"] == [
        "--subject-pattern took over 1.0 s on this subject; not matched (simplify the pattern)"
    ]
    summary = json.loads((out / "summary.json").read_text("utf-8"))
    assert summary["totals"]["subject_matches"] == 0


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("a{99999999999}", "repeat count too big at position 2"),
        ("(" * 1000 + ")" * 1000, "maximum recursion depth exceeded"),
        ("(", "missing ) at position 1"),
    ],
    ids=["huge-repeat", "deep-groups", "unbalanced"],
)
def test_bad_subject_patterns_are_usage_errors(tmp_path: Path, pattern: str, reason: str) -> None:
    message = tmp_path / "m.eml"
    message.write_bytes(_HEAD + b"Subject: x\r\n\r\nbody\r\n")
    result = _inbec(
        "analyze", str(message), "-q", "-o", str(tmp_path / "c"), "--subject-pattern", pattern
    )
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith("error: --subject-pattern is not a valid regular expression: ")
    assert reason in line


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "http://127.0.0.1:99999",
            "--url 'http://127.0.0.1:99999': not a valid URL (Port out of range 0-65535)",
        ),
        ("http://[::1:9", "--url 'http://[::1:9': not a valid URL (Invalid IPv6 URL)"),
        ("ftp://host", "--url 'ftp://host': give http:// or https:// and the host"),
    ],
)
def test_bad_urls_are_one_line_usage_errors(tmp_path: Path, url: str, message: str) -> None:
    result = runner.invoke(
        app, ["export", "opensearch", "--from-case", str(tmp_path), "--url", url]
    )
    assert result.exit_code == 2
    assert result.output.strip() == f"error: {message}"


def test_a_ca_bundle_with_an_http_url_is_a_usage_error(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("not used\n", encoding="utf-8")
    result = runner.invoke(
        app,
        [
            "export",
            "opensearch",
            "--from-case",
            str(tmp_path),
            "--url",
            "http://127.0.0.1:9",
            "--ca-cert",
            str(bundle),
        ],
    )
    assert result.exit_code == 2
    assert result.output.strip() == ("error: --ca-cert is for an https:// URL; this one is http://")


def test_legit_files_in_utf16_are_read_and_fifos_are_refused(tmp_path: Path) -> None:
    message = tmp_path / "m.eml"
    message.write_bytes(_HEAD + b"Subject: x\r\n\r\nbody\r\n")
    legit = tmp_path / "legit.txt"
    legit.write_text("# the client\nacme-corp.com\n", encoding="utf-16")
    out = tmp_path / "case"
    result = _inbec("analyze", str(message), "-q", "-o", str(out), "--legit-file", str(legit))
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text("utf-8"))
    assert summary["case"]["legit_domains"] == ["acme-corp.com"]
    fifo = tmp_path / "legit.fifo"
    os.mkfifo(fifo)
    result = _inbec("analyze", str(message), "-q", "-o", str(out), "--legit-file", str(fifo))
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: cannot read {fifo}: not a regular file"


def test_a_file_name_with_a_newline_stays_on_one_line(tmp_path: Path) -> None:
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    (evidence / "new\nline.eml").write_bytes(b"garbage")
    (evidence / "ok.eml").write_bytes(_HEAD + b"Subject: x\r\n\r\nbody\r\n")
    out = tmp_path / "case"
    result = _inbec("analyze", str(evidence), "-o", str(out), "--legit", "acme-corp.com")
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        f"warning: {evidence}/new line.eml: named like evidence but not a PST/OST, MSG, EML "
        "or mbox file (7 bytes)"
    ]
    forged = _inbec("analyze", "nope\nerror: forged line", "-o", str(tmp_path / "c2"))
    assert forged.returncode == 2
    assert len(forged.stderr.splitlines()) == 1
    with (out / "timeline.csv").open(encoding="utf-8") as handle:
        assert all(line.count(",") >= 5 for line in handle)


def test_raw_8bit_headers_are_read_as_windows_1252(tmp_path: Path) -> None:
    message = tmp_path / "latin.eml"
    message.write_bytes(
        b"From: Andr\xe9 <andre@acme-corp.com>\r\nTo: b@x.example\r\n"
        b"Subject: R\xe9union \xe0 Z\xfcrich \x80 100\r\n\r\nbody\r\n"
    )
    out = tmp_path / "case"
    analyze([message], CaseContext(), out)
    [document] = _documents(out)
    assert document["email"]["subject"] == "Réunion à Zürich € 100"
    assert document["inbec"]["display_names"]["from"] == ["André"]


def test_emoji_codes_in_evidence_are_shown_as_written(tmp_path: Path) -> None:
    message = tmp_path / "m.eml"
    message.write_bytes(
        b"From: :warning: CEO <ceo@acme-c0rp.com>\r\nTo: a@acme-corp.com\r\n"
        b"Date: Mon, 08 Apr 2024 13:37:42 +0000\r\nSubject: :skull: pay now\r\n\r\nbody\r\n"
    )
    result = _inbec("analyze", str(message), "-o", str(tmp_path / "c"), "--legit", "acme-corp.com")
    assert result.returncode == 0, result.stderr
    assert ":skull: pay now" in result.stdout
    assert "\N{SKULL}" not in result.stdout and "\N{WARNING SIGN}" not in result.stdout
