"""The command line: exit codes, usage errors, and the terminal summary."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from inbec_export.cli import app, safe

runner = CliRunner()


def test_unknown_path_is_a_usage_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["analyze", str(tmp_path / "missing.pst"), "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "no such file or folder" in result.output
    assert "missing.pst" in result.output


def test_folder_without_evidence_is_a_usage_error(tmp_path: Path) -> None:
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    (evidence / "notes.txt").write_text("nothing to see here\n", encoding="utf-8")
    result = runner.invoke(
        app, ["analyze", str(evidence), "--legit", "acme-corp.com", "--out", str(tmp_path / "case")]
    )
    assert result.exit_code == 2
    assert result.output.replace("\n", "") == (
        f"error: no evidence found in {evidence} (PST/OST, MSG, EML or mbox, recognised by "
        f"content); {tmp_path / 'case' / 'summary.json'} lists the 1 file skipped or failed"
    )
    summary = json.loads((tmp_path / "case" / "summary.json").read_text("utf-8"))
    assert summary["totals"]["files_skipped"] == 1
    assert summary["skipped_files"] == [
        {"path": str(evidence / "notes.txt"), "reason": "not a PST/OST, MSG, EML or mbox file"}
    ]


def test_an_empty_folder_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    evidence = tmp_path / "evidence"
    (evidence / "empty-subfolder").mkdir(parents=True)
    out = tmp_path / "case"
    result = runner.invoke(
        app, ["analyze", str(evidence), "--legit", "acme-corp.com", "-o", str(out)]
    )
    assert result.exit_code == 2
    assert result.output.replace("\n", "") == (
        f"error: no files in {evidence}: nothing to read (nothing was written)"
    )
    assert not out.exists()


def test_bad_options_are_usage_errors(tmp_path: Path) -> None:
    eml = tmp_path / "a.eml"
    eml.write_bytes(b"From: a@b.example\r\nSubject: x\r\n\r\nbody\r\n")
    bad_regex = runner.invoke(app, ["analyze", str(eml), "--subject-pattern", "(", "-o", "c"])
    assert bad_regex.exit_code == 2
    assert "--subject-pattern is not a valid regular expression" in bad_regex.output
    bad_case = runner.invoke(app, ["analyze", str(eml), "--case", "Bad Case!", "-o", "c"])
    assert bad_case.exit_code == 2
    assert "case id 'Bad Case!' is not valid" in bad_case.output
    bad_auth = runner.invoke(app, ["analyze", str(eml), "--auth-fail", "spf", "-o", "c"])
    assert bad_auth.exit_code == 2
    assert "write it as method=result" in bad_auth.output
    too_many = runner.invoke(app, ["analyze", str(eml), "--workers", "100000", "-o", "c"])
    assert too_many.exit_code == 2
    assert "100000 is not in the range 1<=x<=64" in too_many.output


def test_one_message_analysis_exits_zero_and_says_where(tmp_path: Path) -> None:
    eml = tmp_path / "a.eml"
    eml.write_bytes(
        b"From: Dana <dana@acme-corp.example>\r\nTo: x@y.example\r\nSubject: hello\r\n"
        b"Date: Tue, 1 Oct 2024 10:00:00 +0000\r\nMessage-ID: <m1@acme-corp.example>\r\n\r\nhi\r\n"
    )
    out = tmp_path / "case"
    result = runner.invoke(
        app, ["analyze", str(eml), "--legit", "acme-corp.example", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert f"Case folder: {out}" in result.output.replace("\n", "")
    summary = json.loads((out / "summary.json").read_text("utf-8"))
    assert summary["status"] == "complete"
    assert summary["totals"]["messages_read"] == 1
    assert summary["totals"]["messages_written"] == 1
    assert summary["case"]["legit_domains"] == ["acme-corp.example"]


def test_terminal_text_from_evidence_is_neutralised() -> None:
    assert safe("Invoice\x1b[31m red\x07 [bold]x[/bold]") == "Invoice[31m red \\[bold]x\\[/bold]"


def test_help_lists_the_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("analyze", "sample-case", "mappings", "rules"):
        assert command in result.output


def test_a_subdomain_lookalike_is_listed_with_the_name_that_shows(tmp_path: Path) -> None:
    message = tmp_path / "m.eml"
    message.write_bytes(
        b"From: CEO <ceo@acme-corp.com.evil.net>\r\nTo: bob@acme-corp.com\r\n"
        b"Subject: wire\r\n\r\nPay now\r\n"
    )
    out = tmp_path / "case"
    result = runner.invoke(
        app, ["analyze", str(message), "--legit", "acme-corp.com", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text("utf-8"))
    [item] = summary["lookalike_domains"]
    assert (item["domain"], item["hosts"], item["techniques"]) == (
        "evil.net",
        ["acme-corp.com.evil.net"],
        ["subdomain"],
    )
    [row] = [line for line in result.output.splitlines() if "│ acme-corp.com │" in line]
    assert row.split("│")[0].strip() == "evil.net (acme-corp.com.evil.net)"
