"""The HTML report (report.html) without a browser: character diff, defanging, escaping,
the Content-Security-Policy, the chart's buckets, caps and the ``inbec report`` command."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from typer.testing import CliRunner

from inbec_export.cli import app
from inbec_export.sample import generator as story
from inbec_export.sinks import report
from inbec_export.sinks.report import (
    DiffSegment,
    TimelineCounts,
    char_diff,
    defang,
    evidence_text,
    highlight_diff,
    json_for_script,
)

runner = CliRunner()


@pytest.fixture(scope="module")
def case_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample case, analyzed (which writes report.html)."""
    root = tmp_path_factory.mktemp("report")
    assert runner.invoke(app, ["sample-case", str(root / "sample")]).exit_code == 0
    out = root / "case"
    result = runner.invoke(
        app,
        [
            "analyze",
            str(root / "sample" / "evidence"),
            "--legit-file",
            str(root / "sample" / "legit-domains.txt"),
            "--case",
            "sample",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    return out


# ----------------------------------------------------------------- character diff


def test_char_diff_of_the_sample_lookalike() -> None:
    assert char_diff("globex-lnd.com", "globex-ind.com") == (
        [DiffSegment("globex-", False), DiffSegment("l", True), DiffSegment("nd.com", False)],
        [DiffSegment("globex-", False), DiffSegment("i", True), DiffSegment("nd.com", False)],
    )


def test_highlight_marks_the_replaced_character_with_its_code_point() -> None:
    assert highlight_diff("globex-lnd.com", "globex-ind.com") == (
        'globex-<mark class="diff" title="U+006C LATIN SMALL LETTER L">l</mark>nd.com',
        'globex-<mark class="diff" title="U+0069 LATIN SMALL LETTER I">i</mark>nd.com',
    )


def test_highlight_of_a_cyrillic_homoglyph() -> None:
    lookalike, legit = highlight_diff("\u0430cme-corp.com", "acme-corp.com")
    assert lookalike == (
        '<mark class="diff" title="U+0430 CYRILLIC SMALL LETTER A">\u0430</mark>cme-corp.com'
    )
    assert legit == '<mark class="diff" title="U+0061 LATIN SMALL LETTER A">a</mark>cme-corp.com'


def test_highlight_of_an_insertion_and_a_deletion() -> None:
    lookalike, legit = highlight_diff("acme-corp-pay.com", "acme-corp.com")
    assert lookalike == (
        'acme-corp<mark class="diff" title="U+002D HYPHEN-MINUS, U+0070 LATIN SMALL LETTER P, '
        'U+0061 LATIN SMALL LETTER A, U+0079 LATIN SMALL LETTER Y">-pay</mark>.com'
    )
    assert legit == "acme-corp.com"
    lookalike, legit = highlight_diff("acm-corp.com", "acme-corp.com")
    assert lookalike == "acm-corp.com"
    assert legit == 'acm<mark class="diff" title="U+0065 LATIN SMALL LETTER E">e</mark>-corp.com'


def test_highlight_escapes_evidence() -> None:
    lookalike, legit = highlight_diff("a<b.com", "ab.com")
    assert lookalike == 'a<mark class="diff" title="U+003C LESS-THAN SIGN">&lt;</mark>b.com'
    assert legit == "ab.com"


# --------------------------------------------------------------- defanging, escaping


@pytest.mark.parametrize(
    ("text", "defanged"),
    [
        ("see https://pay.evil.example/a.b?x=1", "see hxxps://pay[.]evil[.]example/a.b?x=1"),
        ("http://10.0.0.1:8080/x", "hxxp://10[.]0[.]0[.]1:8080/x"),
        ("HTTPS://EVIL.EXAMPLE", "HXXPS://EVIL[.]EXAMPLE"),
        ("ftp://files.example/f.zip", "fxp://files[.]example/f.zip"),
        ("go to www.evil.example now", "go to www[.]evil[.]example now"),
        ("https://www.evil.example/", "hxxps://www[.]evil[.]example/"),
        ("no link in INV-2024.0417", "no link in INV-2024.0417"),
    ],
)
def test_defang(text: str, defanged: str) -> None:
    assert defang(text) == defanged


def test_evidence_text_shows_invisible_characters_as_escapes() -> None:
    assert evidence_text("inv\u202egnp.exe\x1b[31m") == "inv\\u202egnp.exe\\x1b[31m"
    assert evidence_text(["a@b.example", "http://c.example"]) == "a@b.example, hxxp://c[.]example"
    assert evidence_text(None) == ""


def test_json_for_script_cannot_close_the_block() -> None:
    text = json_for_script({"s": "</script><!--&"})
    assert text == '{"s":"\\u003c/script\\u003e\\u003c!--\\u0026"}'
    assert json.loads(text) == {"s": "</script><!--&"}


# ------------------------------------------------------------------- timeline chart


def _hour(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def test_chart_granularity_follows_the_span() -> None:
    counts = TimelineCounts()
    counts.add_message("2024-04-08T13:37:42+02:00")
    counts.add_message("2024-04-08T14:05:00+00:00")
    counts.add_finding("2024-04-08T13:59:59+00:00")
    counts.add_message("not a date")
    counts.add_finding(None)
    assert counts.buckets() == (
        "hour",
        [("2024-04-08 11:00", 1, 0), ("2024-04-08 12:00", 0, 0), ("2024-04-08 13:00", 0, 1),
         ("2024-04-08 14:00", 1, 0)],
    )  # fmt: skip
    assert (counts.undated_messages, counts.undated_findings) == (1, 1)

    counts.add_message("2024-04-20T00:00:00+00:00")
    granularity, buckets = counts.buckets()
    assert granularity == "day"
    assert (len(buckets), buckets[0], buckets[-1]) == (
        13,
        ("2024-04-08", 2, 1),
        ("2024-04-20", 1, 0),
    )

    counts.add_finding("2025-01-31T23:00:00-05:00")
    granularity, buckets = counts.buckets()
    assert granularity == "month"
    assert (len(buckets), buckets[0], buckets[-1]) == (11, ("2024-04", 3, 1), ("2025-02", 0, 1))

    counts.add_message("1601-01-01T00:00:00+00:00")
    granularity, buckets = counts.buckets()
    assert granularity == "year"
    assert (len(buckets), buckets[0], buckets[-1]) == (425, ("1601", 1, 0), ("2025", 0, 1))


# ------------------------------------------------------------------ the whole report


def _policy(page: str) -> str:
    match = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', page)
    assert match is not None
    return match.group(1).replace("&#x27;", "'")


def _sha256(text: str) -> str:
    return base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")


def test_policy_allows_exactly_the_inline_blocks(case_dir: Path) -> None:
    page = (case_dir / "report.html").read_text("utf-8")
    scripts = re.findall(r"<script>(.*?)</script>", page, re.DOTALL)
    styles = re.findall(r"<style>(.*?)</style>", page, re.DOTALL)
    assert (len(scripts), len(styles)) == (1, 1)
    assert _policy(page) == (
        f"default-src 'none'; script-src 'sha256-{_sha256(scripts[0])}'; "
        f"style-src 'sha256-{_sha256(styles[0])}'; img-src data:; base-uri 'none'; "
        "form-action 'none'"
    )
    assert "unsafe-inline" not in page
    assert not list(case_dir.glob("*.partial"))


def test_report_holds_the_sample_findings_and_conversation(case_dir: Path) -> None:
    data = report.gather(case_dir)
    assert data.findings_total == 22
    assert [f["severity"] for f in data.findings[:5]] == ["critical"] * 5
    assert [lookalike["domain"] for lookalike in data.lookalikes] == [story.LOOKALIKE_DOMAIN]
    (conversation,) = data.conversations
    assert [(row["from"], row["joined"]) for row in conversation.rows] == [
        (["marco.bellini@globex-ind.com"], False),
        (["priya.raman@acme-corp.com"], False),
        ([story.LOOKALIKE_ADDRESS], True),
        (["priya.raman@acme-corp.com"], False),
        ([story.ATTACKER_REPLY_TO], False),
        (["marco.bellini@globex-ind.com"], False),
    ]
    assert data.conversations_complete


def test_conversation_needs_a_second_read_for_messages_before_the_joining_one(
    case_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The invoice that opens the thread comes before the attacker's message in the file:
    # its links are known only once the attacker's message was read.
    monkeypatch.setattr(report, "THREAD_PASSES", 1)
    data = report.gather(case_dir)
    (conversation,) = data.conversations
    assert len(conversation.member_ids) == 5
    assert [row["timestamp"][:10] for row in conversation.rows] == [
        "2024-04-03",
        "2024-04-08",
        "2024-04-08",
        "2024-04-08",
        "2024-04-16",
    ]
    assert not data.conversations_complete
    page = report.render(data)
    assert "may have more messages than shown" in page


def test_findings_table_is_capped_to_the_most_severe(
    case_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(report, "FINDINGS_SHOWN", 3)
    data = report.gather(case_dir)
    assert [f["severity"] for f in data.findings] == ["critical", "critical", "critical"]
    assert data.findings_total == 22
    page = report.render(data)
    assert "The 3 most severe of 22 findings shown; 19 more in findings.ndjson." in page


def test_report_command_writes_the_same_page_again(case_dir: Path) -> None:
    first = (case_dir / "report.html").read_bytes()
    (case_dir / "report.html").unlink()
    result = runner.invoke(app, ["report", str(case_dir)])
    assert result.exit_code == 0, result.output
    assert "report.html" in result.output
    assert (case_dir / "report.html").read_bytes() == first


def test_counts_of_the_run_spare_reading_the_messages_again(
    case_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from_files = report.gather(case_dir)
    counts = TimelineCounts()
    counts.messages.update(from_files.timeline.messages)
    counts.undated_messages = from_files.timeline.undated_messages
    read: list[str] = []
    documents = report._documents

    def spy(path: Path) -> object:
        read.append(path.name)
        return documents(path)

    monkeypatch.setattr(report, "_documents", spy)
    # The sample has a thread intrusion: its conversation still needs messages.ndjson.
    given = report.gather(case_dir, counts)
    assert read.count("messages.ndjson") == 3
    assert given.messages_total == from_files.messages_total == 14
    assert given.timeline.buckets() == from_files.timeline.buckets()
    assert [c.rows for c in given.conversations] == [c.rows for c in from_files.conversations]

    # Without one, the run's counts are all the report needs from the messages.
    plain = tmp_path / "case"
    plain.mkdir()
    for name in ("summary.json", "failures.ndjson", "messages.ndjson"):
        (plain / name).write_bytes((case_dir / name).read_bytes())
    (plain / "findings.ndjson").write_text(
        "".join(
            line + "\n"
            for line in (case_dir / "findings.ndjson").read_text("utf-8").splitlines()
            if '"thread-intrusion"' not in line
        ),
        "utf-8",
    )
    read.clear()
    data = report.gather(plain, counts)
    assert "messages.ndjson" not in read
    assert data.messages_total == 14
    assert data.timeline.messages == from_files.timeline.messages
    assert sum(data.timeline.messages.values()) == 14
    assert data.conversations == []


def test_hour_of_a_time() -> None:
    plus_two = timezone(timedelta(hours=2))
    assert report.hour_of(datetime(2024, 4, 8, 13, 37, 42, tzinfo=plus_two)) == datetime(
        2024, 4, 8, 11, tzinfo=UTC
    )
    assert report.hour_of(datetime(2024, 4, 8, 13, 37)) == datetime(2024, 4, 8, 13, tzinfo=UTC)
    assert report.hour_of(None) is None
    # No UTC hour exists for it: counted as undated, not an error.
    assert report.hour_of(datetime(1, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=1)))) is None
    counts = TimelineCounts()
    counts.add_message("0001-01-01T00:30:00+01:00")
    assert (counts.undated_messages, dict(counts.messages)) == (1, {})


def test_report_command_refuses_what_is_not_a_complete_case(tmp_path: Path) -> None:
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2
    assert "is not a case folder (no summary.json)" in result.output
    (tmp_path / "summary.json").write_text('{"status": "incomplete"}', "utf-8")
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2
    assert "incomplete: run inbec analyze again" in result.output
    assert not (tmp_path / "report.html").exists()
    for part, value, kind in (("totals", '"x"', "str"), ("case", "[]", "list")):
        (tmp_path / "summary.json").write_text(
            f'{{"status": "complete", "{part}": {value}}}', "utf-8"
        )
        result = runner.invoke(app, ["report", str(tmp_path)])
        assert result.exit_code == 2
        assert result.output.replace("\n", "") == (
            f"error: cannot read {tmp_path / 'summary.json'}: '{part}' is a {kind}, not an "
            "object (was the file edited?)"
        )
    (tmp_path / "summary.json").write_text('{"status": "complete", "evidence": [1]}', "utf-8")
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2
    assert "'evidence' holds a int" in result.output
    assert not (tmp_path / "report.html").exists()
