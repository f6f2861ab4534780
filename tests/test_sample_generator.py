"""Tests of the sample case generator: determinism, layout, and the headers it writes."""

from __future__ import annotations

import email
import email.policy
import hashlib
import mailbox
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from inbec_export.model import AuthResult, ItemFailure, MessageRecord
from inbec_export.readers.rfc822 import decode_thread_index
from inbec_export.sample import generator as g

EXPECTED_FILES = (
    "evidence/dana.whitfield.mbox",
    "evidence/priya.raman/Inbox/2024-04-02_0714_Invoice_INV-2024-0417.eml",
    "evidence/priya.raman/Inbox/2024-04-04_0630_Estratto_conto_10442.eml",
    "evidence/priya.raman/Inbox/2024-04-08_1337_RE_Invoice_INV-2024-0417.eml",
    "evidence/priya.raman/Inbox/2024-04-08_1748_RE_Invoice_INV-2024-0417.eml",
    "evidence/priya.raman/Inbox/2024-04-16_0802_RE_Invoice_INV-2024-0417.eml",
    "evidence/priya.raman/Sent Items/2024-04-03_1441_RE_Invoice_INV-2024-0417.eml",
    "evidence/priya.raman/Sent Items/2024-04-08_1512_RE_Invoice_INV-2024-0417.eml",
    "evidence/reported-phish_urgent-wire.eml",
    "legit-domains.txt",
)


def _hashes(root: Path) -> dict[str, str]:
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> g.SampleCase:
    return g.generate_sample_case(tmp_path_factory.mktemp("sample"))


def _info(key: str) -> g.SampleMessage:
    return next(info for info in g.SAMPLE_MESSAGES if info.key == key)


def _eml(case: g.SampleCase, key: str) -> EmailMessage:
    raw = (case.evidence_dir / _info(key).file).read_bytes()
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def _unfolded(message: EmailMessage, name: str) -> list[str]:
    values = message.get_all(name) or []
    return [" ".join(str(value).split()) for value in values]


# --- Determinism and layout ---------------------------------------------------------------


def test_two_runs_write_identical_bytes(tmp_path: Path) -> None:
    first = g.generate_sample_case(tmp_path / "one")
    second = g.generate_sample_case(tmp_path / "two")

    assert _hashes(first.out_dir) == _hashes(second.out_dir)
    assert first.messages == second.messages


def test_regenerating_overwrites_and_keeps_other_files(tmp_path: Path) -> None:
    g.generate_sample_case(tmp_path)
    before = _hashes(tmp_path)
    (tmp_path / "notes.txt").write_text("analyst notes\n")
    (tmp_path / "evidence" / "priya.raman" / "Inbox" / "extra.eml").write_text("kept\n")
    target = tmp_path / "evidence" / "reported-phish_urgent-wire.eml"
    target.write_bytes(b"tampered")

    g.generate_sample_case(tmp_path)

    after = _hashes(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "analyst notes\n"
    assert "evidence/priya.raman/Inbox/extra.eml" in after
    assert {k: v for k, v in after.items() if k in before} == before


def test_file_times_are_fixed(case: g.SampleCase) -> None:
    invoice = case.evidence_dir / _info("invoice").file
    assert int(invoice.stat().st_mtime) == int(g.T_INVOICE.timestamp())


def test_layout_and_counts(case: g.SampleCase) -> None:
    assert tuple(sorted(_hashes(case.out_dir))) == EXPECTED_FILES
    assert case.evidence_dir == case.out_dir / "evidence"
    assert case.legit_file == case.out_dir / "legit-domains.txt"
    assert case.message_count == 14 == len(case.messages)
    assert len(case.files) == 9
    assert sum(1 for info in case.messages if info.mbox_index is None) == 8
    assert sorted(info.mbox_index for info in case.messages if info.mbox_index is not None) == [
        0,
        1,
        2,
        3,
        4,
        5,
    ]
    dates = [info.date for info in case.messages]
    assert dates == sorted(dates)


def test_legit_domains_file(case: g.SampleCase) -> None:
    lines = case.legit_file.read_text("ascii").splitlines()
    domains = tuple(line.strip() for line in lines if line.strip() and not line.startswith("#"))

    assert domains == g.LEGIT_DOMAINS == case.legit_domains == ("acme-corp.com", "globex-ind.com")
    assert any(line.startswith("#") for line in lines)


def test_message_ids_are_unique(case: g.SampleCase) -> None:
    ids = [info.message_id for info in case.messages]
    assert len(set(ids)) == len(ids)


def test_eml_files_use_crlf_and_mbox_lf(case: g.SampleCase) -> None:
    for path in case.files:
        data = path.read_bytes()
        assert data.isascii()
        if path.suffix == ".eml":
            assert data.count(b"\n") == data.count(b"\r\n")
        else:
            assert b"\r" not in data


def test_story_constants() -> None:
    assert g.LOOKALIKE_DOMAIN == "globex-lnd.com"
    assert g.LOOKALIKE_OF in g.LEGIT_DOMAINS
    assert g.LOOKALIKE_DOMAIN not in g.LEGIT_DOMAINS
    assert all(
        a.endswith(("@globex-lnd.com", "@gmail.com", "@outlook.com")) for a in g.ATTACKER_ADDRESSES
    )
    assert g.ATTACKER_ORIGINATING_IP.startswith("203.0.113.")
    assert g.ATTACKER_RELAY_IP.startswith("198.51.100.")


# --- What the standard library reads ------------------------------------------------------


def test_stdlib_reads_the_lookalike_message(case: g.SampleCase) -> None:
    message = _eml(case, "intrusion")

    assert message["From"].addresses[0].addr_spec == g.LOOKALIKE_ADDRESS
    assert message["From"].addresses[0].display_name == "Marco Bellini"
    assert message["Reply-To"].addresses[0].addr_spec == g.ATTACKER_REPLY_TO
    assert message["Cc"].addresses[0].addr_spec == g.LOOKALIKE_CC_ADDRESS
    assert message["Subject"] == f"RE: {g.INVOICE_SUBJECT}"
    assert message["In-Reply-To"] == f"<{g.MSGID_INVOICE_ACK}>"
    assert _unfolded(message, "References") == [f"<{g.MSGID_INVOICE}> <{g.MSGID_INVOICE_ACK}>"]
    assert _unfolded(message, "Authentication-Results") == [g.INTRUSION_AUTH_RESULTS]
    assert _unfolded(message, "Received-SPF") == [g.INTRUSION_RECEIVED_SPF]
    assert message["X-Originating-IP"] == f"[{g.ATTACKER_ORIGINATING_IP}]"
    assert "compauth=fail reason=001" in g.INTRUSION_AUTH_RESULTS
    body = message.get_body(("plain",))
    assert body is not None
    text = body.get_content()
    assert g.FRAUD_IBAN in text and "new bank details" in text and "urgent" in text


def test_stdlib_decodes_the_encoded_subjects(case: g.SampleCase) -> None:
    cfo = _eml(case, "cfo-impersonation")
    statement = _eml(case, "statement")
    cfo_raw = (case.evidence_dir / _info("cfo-impersonation").file).read_bytes()
    statement_raw = (case.evidence_dir / _info("statement").file).read_bytes()

    assert f"Subject: {g.CFO_SUBJECT_RAW}\r\n".encode() in cfo_raw
    assert f"Subject: {g.STATEMENT_SUBJECT_RAW}\r\n".encode() in statement_raw
    assert cfo["Subject"] == g.CFO_SUBJECT == "Urgent – confidential wire transfer today"
    assert statement["Subject"] == g.STATEMENT_SUBJECT
    assert statement["Subject"] == "Estratto conto n° 10442: attività di marzo 2024"
    assert cfo["From"].addresses[0].display_name == g.CFO_NAME
    assert cfo["From"].addresses[0].addr_spec == g.CFO_IMPERSONATION_ADDRESS


def test_stdlib_sees_the_return_path_mismatch(case: g.SampleCase) -> None:
    statement = _eml(case, "statement")

    assert statement["Return-Path"] == f"<{g.STATEMENT_RETURN_PATH}>"
    assert statement["From"].addresses[0].domain == "globex-ind.com"
    body = statement.get_body(("plain",))
    assert body is not None and "Contabilità" in body.get_content()


def test_stdlib_reads_the_mbox(case: g.SampleCase) -> None:
    box = mailbox.mbox(case.evidence_dir / "dana.whitfield.mbox", create=False)
    try:
        messages = list(box)
    finally:
        box.close()
    mbox_infos = sorted(
        (info for info in case.messages if info.mbox_index is not None),
        key=lambda info: info.mbox_index or 0,
    )

    assert [m["Message-ID"] for m in messages] == [f"<{i.message_id}>" for i in mbox_infos]
    post = messages[[i.key for i in mbox_infos].index("list-post")]
    arc = " ".join(str(post["ARC-Authentication-Results"]).split())
    assert arc == g.LIST_ARC_AUTH_RESULTS


def test_dates_match_the_story(case: g.SampleCase) -> None:
    for info in case.messages:
        if info.mbox_index is not None:
            continue
        assert _eml(case, info.key)["Date"].datetime == info.date, info.key


# --- What our readers read ----------------------------------------------------------------


def _read_all(evidence_dir: Path) -> Iterator[MessageRecord | ItemFailure]:
    try:
        from inbec_export.readers import iter_evidence
    except ImportError:  # another format's reader is unfinished: read eml and mbox directly
        yield from _read_directly(evidence_dir)
        return
    for event in iter_evidence([evidence_dir]):
        if isinstance(event, (MessageRecord, ItemFailure)):
            yield event
        elif type(event).__name__ == "FileSkipped":
            raise AssertionError(f"skipped: {event}")


def _read_directly(evidence_dir: Path) -> Iterator[MessageRecord | ItemFailure]:
    from inbec_export.model import EvidenceFile
    from inbec_export.readers.base import hash_file
    from inbec_export.readers.eml import EmlReader
    from inbec_export.readers.mbox import MboxReader

    for path in sorted(evidence_dir.rglob("*")):
        if not path.is_file():
            continue
        size, sha256 = hash_file(path)
        head = path.read_bytes()[:8192]
        if MboxReader.sniff(head):
            events = MboxReader().read(EvidenceFile(str(path), "mbox", size, sha256))
        else:
            assert EmlReader.sniff(head), path
            events = EmlReader().read(EvidenceFile(str(path), "eml", size, sha256))
        for event in events:
            if isinstance(event, (MessageRecord, ItemFailure)):
                yield event


@pytest.fixture(scope="module")
def records(case: g.SampleCase) -> dict[str, MessageRecord]:
    events = list(_read_all(case.evidence_dir))
    failures = [e for e in events if isinstance(e, ItemFailure)]
    assert failures == []
    by_id = {e.message_id: e for e in events if isinstance(e, MessageRecord)}
    assert len(by_id) == case.message_count
    return {info.key: by_id[info.message_id] for info in case.messages}


def _auth(record: MessageRecord, method: str, source: str) -> list[AuthResult]:
    return [r for r in record.auth_results if r.method == method and r.source == source]


def test_reader_places_every_message(case: g.SampleCase, records: dict[str, MessageRecord]) -> None:
    for info in case.messages:
        record = records[info.key]
        assert Path(record.evidence_path) == case.evidence_dir / info.file
        expected_item = "message" if info.mbox_index is None else f"message {info.mbox_index}"
        assert record.item_id == expected_item
        assert record.evidence_format == ("eml" if info.mbox_index is None else "mbox")
        assert record.subject == info.subject
        assert record.from_[0].address == info.sender
        assert record.date == info.date
        assert record.subject_decode_error is None
        assert record.warnings == []


def test_reader_intrusion_record(records: dict[str, MessageRecord]) -> None:
    record = records["intrusion"]

    assert [(a.name, a.address) for a in record.from_] == [("Marco Bellini", g.LOOKALIKE_ADDRESS)]
    assert record.from_[0].domain == g.LOOKALIKE_DOMAIN
    assert [a.address for a in record.reply_to] == [g.ATTACKER_REPLY_TO]
    assert [a.address for a in record.cc] == [g.LOOKALIKE_CC_ADDRESS]
    assert record.originating_ips == [g.ATTACKER_ORIGINATING_IP]
    assert record.in_reply_to == g.MSGID_INVOICE_ACK
    assert record.references == [g.MSGID_INVOICE, g.MSGID_INVOICE_ACK]
    assert record.thread_topic == g.INVOICE_SUBJECT
    assert record.x_mailer == "Microsoft Outlook 16.0"
    header_results = {
        (r.method, r.result, r.domain, r.reason)
        for r in record.auth_results
        if r.source == "authentication-results"
    }
    assert header_results == {
        ("spf", "softfail", "globex-lnd.com", None),
        ("dkim", "none", None, None),
        ("dmarc", "fail", "globex-lnd.com", None),
        ("compauth", "fail", None, "001"),
    }
    assert [r.result for r in _auth(record, "spf", "received-spf")] == ["softfail"]
    hop_ips = [hop.ip for hop in record.hops]
    assert hop_ips == [g.ACME_MX_IP, g.ATTACKER_RELAY_IP, g.ATTACKER_ORIGINATING_IP]
    assert g.FRAUD_IBAN in record.body


def test_reader_thread_links(records: dict[str, MessageRecord]) -> None:
    conversation = decode_thread_index(records["invoice"].thread_index)

    assert conversation is not None
    for key in ("invoice-ack", "intrusion", "reply-to-attacker", "overdue"):
        assert decode_thread_index(records[key].thread_index) == conversation, key
    assert records["bank-letter"].thread_index is None
    assert records["bank-letter"].in_reply_to == g.MSGID_REPLY_TO_ATTACKER
    assert records["overdue"].in_reply_to == g.MSGID_INVOICE_ACK
    assert [a.address for a in records["reply-to-attacker"].to] == [g.ATTACKER_REPLY_TO]


def test_reader_legitimate_mail_passes(records: dict[str, MessageRecord]) -> None:
    for key in ("invoice", "overdue", "statement", "bank-letter", "cfo-impersonation"):
        results = _auth(records[key], "dmarc", "authentication-results")
        assert [r.result for r in results] == ["pass"], key
        assert [r.result for r in _auth(records[key], "compauth", "authentication-results")] == [
            "pass"
        ]
        assert records[key].originating_ips == (
            [g.ATTACKER_ORIGINATING_IP] if key == "cfo-impersonation" else []
        )
    for key in ("invoice-ack", "reply-to-attacker", "capex", "capex-reply", "approval"):
        assert records[key].auth_results == [], key


def test_reader_encoded_subjects_and_impersonation(records: dict[str, MessageRecord]) -> None:
    cfo = records["cfo-impersonation"]
    statement = records["statement"]

    assert cfo.subject == g.CFO_SUBJECT and cfo.subject_raw == g.CFO_SUBJECT_RAW
    assert statement.subject == g.STATEMENT_SUBJECT
    assert statement.subject_raw == g.STATEMENT_SUBJECT_RAW
    assert [(a.name, a.address) for a in cfo.from_] == [(g.CFO_NAME, g.CFO_IMPERSONATION_ADDRESS)]
    assert [a.address for a in statement.return_path] == [g.STATEMENT_RETURN_PATH]
    assert statement.return_path[0].domain != statement.from_[0].domain
    assert "Contabilità clienti" in statement.body
    others = [k for k, r in records.items() if r.return_path and k != "statement"]
    for key in others:
        record = records[key]
        assert record.return_path[0].domain == record.from_[0].domain, key


def test_reader_arc_and_attachments(records: dict[str, MessageRecord]) -> None:
    arc = records["list-post"].auth_results

    assert {(r.method, r.result) for r in arc if r.source == "arc-authentication-results"} == {
        ("dkim", "pass"),
        ("spf", "pass"),
        ("dmarc", "pass"),
    }
    assert [r.authserv_id for r in arc if r.source == "arc-authentication-results"] == [
        "mx.lists.example.org"
    ] * 3
    holders = {k: r.attachments for k, r in records.items() if r.attachments}
    assert {k: [a.name for a in v] for k, v in holders.items()} == {
        "invoice": ["INV-2024-0417.pdf"],
        "bank-letter": ["Globex_bank_change_letter.pdf"],
    }
    assert all(a.mime_type == "application/pdf" for v in holders.values() for a in v)


def test_reader_undoes_mbox_from_quoting(records: dict[str, MessageRecord]) -> None:
    body = records["capex-reply"].body

    assert "\nFrom what I see" in body
    assert ">From" not in body
