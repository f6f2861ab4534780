"""The sample invoice-fraud case end to end, through the command line: exact findings."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from inbec_export.cli import app
from inbec_export.sample import generator as story

runner = CliRunner()


def _documents(path: Path) -> list[dict[str, Any]]:
    lines = path.read_text("utf-8").splitlines()
    return [json.loads(line) for line in lines[1::2]]


@pytest.fixture(scope="module")
def case_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sample")
    generated = runner.invoke(app, ["sample-case", str(root / "sample")])
    assert generated.exit_code == 0, generated.output
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
            "--subject-pattern",
            "invoice|wire",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "globex-lnd.com" in result.output
    return out


@pytest.fixture(scope="module")
def message_ids(case_dir: Path) -> dict[str, str]:
    """Document id -> Message-ID of every sample message."""
    return {
        d["event"]["id"]: d["email"]["message_id"] for d in _documents(case_dir / "messages.ndjson")
    }


def _findings(case_dir: Path, message_ids: dict[str, str]) -> set[tuple[str, str, str]]:
    found = set()
    for document in _documents(case_dir / "findings.ndjson"):
        key = document["inbec"]["finding"]["key"]
        found.add(
            (
                document["rule"]["id"],
                message_ids.get(key, key),
                document["inbec"]["finding"]["severity"],
            )
        )
    return found


def test_expected_findings_exactly(case_dir: Path, message_ids: dict[str, str]) -> None:
    s = story
    assert _findings(case_dir, message_ids) == {
        ("lookalike-domain", "globex-lnd.com", "critical"),
        ("suspicious-mailbox", s.LOOKALIKE_ADDRESS, "high"),
        ("suspicious-mailbox", s.LOOKALIKE_CC_ADDRESS, "medium"),
        ("lookalike-message", s.MSGID_INTRUSION, "critical"),
        ("lookalike-message", s.MSGID_REPLY_TO_ATTACKER, "high"),
        ("thread-intrusion", s.MSGID_INTRUSION, "critical"),
        ("auth-failure", s.MSGID_INTRUSION, "high"),
        ("freemail-reply-to", f"globex-lnd.com>{s.ATTACKER_REPLY_TO}", "high"),
        ("return-path-mismatch", "globex-ind.com>erp-cloud.example", "low"),
        ("display-name-impersonation", f"dana whitfield|{s.CFO_IMPERSONATION_ADDRESS}", "high"),
        ("display-name-impersonation", f"marco bellini|{s.ATTACKER_REPLY_TO}", "high"),
        ("display-name-impersonation", f"marco bellini|{s.LOOKALIKE_ADDRESS}", "critical"),
        ("display-name-impersonation", f"giulia conti|{s.LOOKALIKE_CC_ADDRESS}", "critical"),
        ("originating-ip", s.ATTACKER_ORIGINATING_IP, "medium"),
        # Payment language: high where the lookalike itself asks, medium where a
        # lookalike, outside sender or failed authentication goes with it, low on the
        # legitimate invoice mail.
        ("payment-language", s.MSGID_INTRUSION, "high"),
        ("payment-language", s.MSGID_REPLY_TO_ATTACKER, "medium"),
        ("payment-language", s.MSGID_BANK_LETTER, "medium"),
        ("payment-language", s.MSGID_CFO_IMPERSONATION, "medium"),
        ("payment-language", s.MSGID_INVOICE, "low"),
        ("payment-language", s.MSGID_STATEMENT, "low"),
        ("payment-language", s.MSGID_OVERDUE, "low"),
        ("payment-language", _approval_message_id(), "low"),
        # --subject-pattern 'invoice|wire' (case-insensitive): the invoice thread and the
        # fake CFO's wire request.
        ("subject-match", s.MSGID_INVOICE, "low"),
        ("subject-match", s.MSGID_INVOICE_ACK, "low"),
        ("subject-match", s.MSGID_INTRUSION, "low"),
        ("subject-match", s.MSGID_REPLY_TO_ATTACKER, "low"),
        ("subject-match", s.MSGID_BANK_LETTER, "low"),
        ("subject-match", s.MSGID_OVERDUE, "low"),
        ("subject-match", s.MSGID_CFO_IMPERSONATION, "low"),
    }


def _approval_message_id() -> str:
    approval = [m for m in story.SAMPLE_MESSAGES if m.key == "approval-request"]
    assert len(approval) == 1
    return approval[0].message_id


def test_lookalike_domain_finding(case_dir: Path) -> None:
    documents = _documents(case_dir / "findings.ndjson")
    [finding] = [d for d in documents if d["rule"]["id"] == "lookalike-domain"]
    assert finding["message"] == (
        "globex-lnd.com imitates globex-ind.com: 'i' replaced by 'l' (replacement); also "
        "similarity; in from, return_path, cc, message_id; 2 messages from 2 addresses, "
        "first 2024-04-08 13:37 UTC"
    )
    assert finding["threat"]["indicator"]["url"]["domain"] == "globex-lnd.com"
    evidence = finding["inbec"]["finding"]["evidence"]
    assert evidence["legit_domain"] == "globex-ind.com"
    assert evidence["techniques"] == ["replacement", "similarity"]
    assert evidence["places"] == {"cc": 2, "from": 1, "message_id": 1, "return_path": 1}
    assert evidence["addresses"] == [story.LOOKALIKE_CC_ADDRESS, story.LOOKALIKE_ADDRESS]
    assert finding["@timestamp"] == "2024-04-08T13:37:42.000+00:00"
    assert finding["event"]["kind"] == "alert"
    assert finding["event"]["severity"] == 99


def test_thread_intrusion_names_where_the_attacker_joined(case_dir: Path) -> None:
    documents = _documents(case_dir / "findings.ndjson")
    [finding] = [d for d in documents if d["rule"]["id"] == "thread-intrusion"]
    evidence = finding["inbec"]["finding"]["evidence"]
    assert evidence["sender"] == story.LOOKALIKE_ADDRESS
    assert evidence["prior_participants"] == [
        story.CREDIT_ADDRESS,
        story.SUPPLIER_ADDRESS,
        story.AP_ADDRESS,
    ]
    assert evidence["previous_message"]["message_id"] == story.MSGID_INVOICE_ACK
    assert evidence["conversation"]["topic"] == story.INVOICE_SUBJECT
    assert evidence["conversation"]["message_count"] == 6
    # The finding points at the intrusion alone, at its time; the legitimate message
    # before it is only named in the evidence.
    assert finding["email"]["message_id"] == [story.MSGID_INTRUSION]
    assert finding["@timestamp"] == "2024-04-08T13:37:42.000+00:00"
    assert finding["event"]["start"] == "2024-04-08T13:37:42.000+00:00"


def test_payment_language_names_the_ibans(case_dir: Path) -> None:
    findings = {}
    for document in _documents(case_dir / "findings.ndjson"):
        if document["rule"]["id"] == "payment-language":
            [message_id] = document["email"]["message_id"]
            findings[message_id] = document
    fraud, legit = story.FRAUD_IBAN.replace(" ", ""), story.LEGIT_IBAN.replace(" ", "")
    assert {m: d["inbec"]["finding"]["evidence"]["ibans"] for m, d in findings.items()} == {
        story.MSGID_INTRUSION: [fraud],
        _approval_message_id(): [fraud],
        story.MSGID_INVOICE: [legit],
        story.MSGID_STATEMENT: [legit],
        story.MSGID_REPLY_TO_ATTACKER: [],
        story.MSGID_BANK_LETTER: [],
        story.MSGID_CFO_IMPERSONATION: [],
        story.MSGID_OVERDUE: [],
    }
    assert findings[story.MSGID_INTRUSION]["message"].startswith(
        f"Payment language (new bank account, IBAN {fraud}, urgent) in "
    )


def test_auth_failure_lists_spf_dmarc_and_compauth(case_dir: Path) -> None:
    documents = _documents(case_dir / "findings.ndjson")
    [finding] = [d for d in documents if d["rule"]["id"] == "auth-failure"]
    failures = finding["inbec"]["finding"]["evidence"]["failures"]
    assert [(f["method"], f["result"], f["domain"], f["source"]) for f in failures] == [
        ("spf", "softfail", "globex-lnd.com", "authentication-results"),
        ("dmarc", "fail", "globex-lnd.com", "authentication-results"),
        ("compauth", "fail", None, "authentication-results"),
        ("spf", "softfail", "globex-lnd.com", "received-spf"),
    ]


def test_message_documents(case_dir: Path) -> None:
    documents = {d["email"]["message_id"]: d for d in _documents(case_dir / "messages.ndjson")}
    assert len(documents) == 14
    intrusion = documents[story.MSGID_INTRUSION]
    assert intrusion["email"]["from"]["address"] == [story.LOOKALIKE_ADDRESS]
    assert intrusion["email"]["reply_to"]["address"] == [story.ATTACKER_REPLY_TO]
    assert intrusion["source"]["ip"] == story.ATTACKER_ORIGINATING_IP
    assert intrusion["inbec"]["sender_type"] == "lookalike"
    assert intrusion["inbec"]["lookalike"]["domains"] == ["globex-lnd.com"]
    assert intrusion["inbec"]["auth"]["dmarc"]["result"] == ["fail"]
    assert intrusion["inbec"]["auth"]["compauth"]["result"] == ["fail"]
    assert intrusion["inbec"]["finding"]["rule_ids"] == [
        "auth-failure",
        "lookalike-message",
        "payment-language",
        "subject-match",
    ]
    cfo = documents[story.MSGID_CFO_IMPERSONATION]
    assert cfo["email"]["subject"] == story.CFO_SUBJECT
    assert cfo["inbec"]["subject_raw"] == story.CFO_SUBJECT_RAW
    assert cfo["inbec"]["display_names"]["from"] == [story.CFO_NAME]
    assert cfo["inbec"]["sender_type"] == "outside"
    statement = documents[story.MSGID_STATEMENT]
    assert statement["email"]["subject"] == story.STATEMENT_SUBJECT
    assert statement["inbec"]["sender_type"] == "legitimate"


def test_summary(case_dir: Path) -> None:
    summary = json.loads((case_dir / "summary.json").read_text("utf-8"))
    assert summary["status"] == "complete"
    assert summary["totals"] == {
        "evidence_files": 9,
        "files_skipped": 0,
        "files_failed": 0,
        "messages_read": 14,
        "messages_written": 14,
        "items_failed": 0,
        "non_mail_items": 0,
        "findings": 29,
        "subject_matches": 7,
    }
    assert summary["lookalike_domains"] == [
        {
            "domain": "globex-lnd.com",
            "hosts": ["globex-lnd.com"],
            "imitates": "globex-ind.com",
            "techniques": ["replacement", "similarity"],
            "message_count": 2,
            "first_seen": "2024-04-08T13:37:42+00:00",
        }
    ]
    assert summary["case"]["legit_domains"] == ["acme-corp.com", "globex-ind.com"]


def test_timelines(case_dir: Path) -> None:
    with (case_dir / "timeline.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["timestamp"] for r in rows] == sorted(r["timestamp"] for r in rows)
    intrusion_rows = [r for r in rows if r["rule_id"] == "thread-intrusion"]
    assert [(r["message_id"], r["timestamp"]) for r in intrusion_rows] == [
        (story.MSGID_INTRUSION, "2024-04-08T13:37:42+00:00")
    ]
    # The legitimate acknowledgement before the intrusion has only its subject-match row.
    assert [
        (r["rule_id"], r["severity"]) for r in rows if r["message_id"] == story.MSGID_INVOICE_ACK
    ] == [("subject-match", "low")]
    events = [json.loads(line) for line in (case_dir / "timeline.jsonl").read_text().splitlines()]
    # 14 sent times, 12 delivery times from the topmost Received header (the two sent
    # items carry none), 29 findings.
    assert len(events) == 55
    for event in events:
        assert set(event) >= {"message", "datetime", "timestamp", "timestamp_desc"}
        assert isinstance(event["timestamp"], int)
        assert not any(key.startswith("_") for key in event)
    cfo = [e for e in events if e.get("email_message_id") == story.MSGID_CFO_IMPERSONATION]
    assert [(e["datetime"], e["timestamp"], e["timestamp_desc"]) for e in cfo] == [
        ("2024-04-11T15:54:25+00:00", 1712850865000000, "Message sent (Date header)"),
        ("2024-04-11T15:54:29+00:00", 1712850869000000, "Message delivered"),
    ]
    with (case_dir / "subject-matches.csv").open(encoding="utf-8", newline="") as handle:
        matches = list(csv.DictReader(handle))
    assert len(matches) == 7
    assert [m["subject"] for m in matches if m["from"] == story.CFO_IMPERSONATION_ADDRESS] == [
        story.CFO_SUBJECT
    ]


def test_rerun_gives_identical_documents(case_dir: Path, tmp_path: Path) -> None:
    sample = tmp_path / "sample"
    runner.invoke(app, ["sample-case", str(sample)])
    out = tmp_path / "case"
    result = runner.invoke(
        app,
        [
            "analyze",
            str(sample / "evidence"),
            "--legit-file",
            str(sample / "legit-domains.txt"),
            "--case",
            "sample",
            "--subject-pattern",
            "invoice|wire",
            "-q",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0
    for name in ("messages.ndjson", "findings.ndjson", "timeline.csv", "timeline.jsonl"):
        first = (case_dir / name).read_text("utf-8").replace(str(case_dir.parent), "")
        second = (out / name).read_text("utf-8").replace(str(tmp_path), "")
        assert first == second, name
