"""The ECS documents: exact values of a real message, and every written field mapped."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from inbec_export.case import CaseContext
from inbec_export.ecs.documents import finding_document, message_document
from inbec_export.ecs.mappings import index_templates, unmapped_fields
from inbec_export.ecs.timeline import message_events, micros
from inbec_export.model import Attachment, Finding, Hop, Indicator, MessageRecord, MessageRef
from inbec_export.readers import iter_evidence

REPO = Path(__file__).resolve().parents[1]


def test_repository_mappings_are_the_generated_templates() -> None:
    for kind, template in index_templates().items():
        on_disk = json.loads((REPO / "mappings" / f"{kind}.json").read_text("utf-8"))
        assert on_disk == template, f"mappings/{kind}.json is stale: run `inbec mappings`"


def test_every_field_of_every_corpus_message_is_mapped(corpus_dir: Path) -> None:
    mapping = index_templates()["messages"]["template"]["mappings"]
    case = CaseContext(legit_domains=("acme-corp.com",))
    unmapped: set[str] = set()
    count = 0
    for event in iter_evidence([corpus_dir / "eml", corpus_dir / "mbox"]):
        if isinstance(event, MessageRecord):
            document = message_document(event, case, ["auth-failure"])
            json.dumps(document)  # serialisable as it is
            unmapped |= unmapped_fields(document, mapping)
            count += 1
    assert count == 694
    assert unmapped == set()


def test_every_field_of_a_finding_is_mapped() -> None:
    mapping = index_templates()["findings"]["template"]["mappings"]
    when = datetime(2024, 3, 5, 9, 12, tzinfo=UTC)
    finding = Finding(
        rule_id="lookalike-domain",
        rule_name="Lookalike domain",
        severity="critical",
        reason="globex-lnd.com imitates globex-ind.com",
        key="globex-lnd.com",
        evidence={"domain": "globex-lnd.com", "fields": ["from", "reply_to"], "n": {"a": 1}},
        messages=[MessageRef("abc", "m1@x", "RE: Invoice", when, "marco@globex-lnd.com")],
        indicators=[
            Indicator("domain-name", "globex-lnd.com"),
            Indicator("email-addr", "marco@globex-lnd.com"),
            Indicator("ipv4-addr", "203.0.113.77"),
        ],
        first_seen=when,
        last_seen=when,
    )
    document = finding_document(finding, CaseContext(case_id="c1"))
    assert unmapped_fields(document, mapping) == set()
    assert unmapped_fields({**document, "stray": 1}, mapping) == {"stray"}
    assert document["threat"]["indicator"] == {
        "type": "domain-name",
        "description": "globex-lnd.com imitates globex-ind.com",
        "url": {"domain": "globex-lnd.com"},
        "email": {"address": "marco@globex-lnd.com"},
        "ip": "203.0.113.77",
    }
    assert document["event"]["severity"] == 99
    assert document["@timestamp"] == "2024-03-05T09:12:00.000+00:00"
    assert document["inbec"]["finding"]["message_doc_ids"] == ["abc"]


def test_exact_document_of_a_real_message(corpus_dir: Path) -> None:
    path = corpus_dir / "eml" / "sublime_bec_ceo_impersonation.eml"
    records = [e for e in iter_evidence([path]) if isinstance(e, MessageRecord)]
    assert len(records) == 1
    record = records[0]
    document = message_document(record, CaseContext(case_id="bec-1"), [])
    assert document["@timestamp"] == "2019-10-21T18:23:24.000+00:00"
    assert document["email"]["from"] == {"address": ["joshkamdjou90@gmail.com"]}
    assert document["email"]["subject"] == "Urgent: Need W2s"
    assert document["email"]["message_id"] == (
        "CAO_do4n4jwcfabQcEScYd9oSjDytgm_PveKKiF_gtBEYL8a0XQ@mail.gmail.com"
    )
    assert document["source"]["ip"] == "209.85.220.41"
    assert document["inbec"]["display_names"]["from"] == ["Joshua Kamdjou"]
    assert document["inbec"]["auth"]["dkim"] == {
        "result": ["fail", "pass"],
        "domain": ["gmail.com"],
    }
    assert document["inbec"]["sender_type"] == "outside"
    assert document["inbec"]["case"] == {"id": "bec-1"}
    assert (
        record.doc_id
        == next(e for e in iter_evidence([path]) if isinstance(e, MessageRecord)).doc_id
    )


def test_a_legitimate_from_domain_that_dmarc_refused_is_spoofed(corpus_dir: Path) -> None:
    """The From domain is the case's own, but the receiving server's DMARC failed: the
    sender is not the domain's, and the document says so."""
    path = corpus_dir / "eml" / "phishing_pot_sample-2921.eml"
    [record] = [e for e in iter_evidence([path]) if isinstance(e, MessageRecord)]
    assert record.from_[0].address == "notifica@bradesco.com.br"
    spoofed = message_document(record, CaseContext(legit_domains=("bradesco.com.br",)), [])
    assert spoofed["inbec"]["auth"]["dmarc"]["result"] == ["fail"]
    assert spoofed["inbec"]["sender_type"] == "spoofed"
    # The same message where failing DMARC is not counted as a failure: legitimate.
    lenient = CaseContext(legit_domains=("bradesco.com.br",))
    lenient.auth_failures = {**lenient.auth_failures, "dmarc": frozenset()}
    assert message_document(record, lenient, [])["inbec"]["sender_type"] == "legitimate"
    other = message_document(record, CaseContext(legit_domains=("acme-corp.com",)), [])
    assert other["inbec"]["sender_type"] == "outside"


def test_timeline_events_carry_iso_datetime_and_microseconds() -> None:
    sent = datetime(2024, 3, 5, 9, 12, 30, 250000, tzinfo=UTC)
    delivered = datetime(2024, 3, 5, 9, 12, 31, tzinfo=UTC)
    record = MessageRecord(
        evidence_path="x.pst",
        evidence_sha256="0" * 64,
        evidence_format="pst",
        item_id="node 1",
        date=sent,
        delivery_time=delivered,
        submit_time=sent,
    )
    events = message_events(record, ["auth-failure"])
    assert [(e["datetime"], e["timestamp"], e["timestamp_desc"]) for e in events] == [
        ("2024-03-05T09:12:30.250000+00:00", 1709629950250000, "Message sent (Date header)"),
        ("2024-03-05T09:12:31+00:00", 1709629951000000, "Message delivered"),
    ]
    assert micros(datetime(1970, 1, 1, tzinfo=UTC)) == 0
    assert all(not key.startswith("_") for event in events for key in event)


def test_attachments_and_hops_keep_their_given_values_only() -> None:
    """Attachments and Received hops are written without their empty values (as every
    other part of a document): a size of 0 stays, an empty name or a hop of nothing goes."""
    when = datetime(2024, 3, 1, 9, 30, 5, 250000, tzinfo=UTC)
    record = MessageRecord(
        evidence_path="case/mail.eml",
        evidence_sha256="0" * 64,
        evidence_format="eml",
        item_id="message",
        attachments=[
            Attachment(name="", size=0, mime_type="", sha256=None),
            Attachment(
                name="invoice.pdf", size=None, mime_type="application/pdf", sha256="ab" * 32
            ),
            Attachment(name=None, size=None, mime_type=None, sha256=None),
        ],
        hops=[
            Hop(from_host=None, by_host=None, ip=None, timestamp=None),
            Hop(
                from_host="mx.example.net",
                by_host="",
                ip="203.0.113.5",
                timestamp=when,
                protocol="ESMTPS",
            ),
        ],
    )
    document = message_document(record, CaseContext())
    assert document["email"]["attachments"] == [
        {"file": {"size": 0}},
        {
            "file": {
                "name": "invoice.pdf",
                "mime_type": "application/pdf",
                "hash": {"sha256": "ab" * 32},
            }
        },
    ]
    assert document["inbec"]["hops"] == [
        {
            "from_host": "mx.example.net",
            "ip": "203.0.113.5",
            "timestamp": "2024-03-01T09:30:05.250+00:00",
            "protocol": "ESMTPS",
        }
    ]
    assert document["inbec"]["attachment"] == {"names": ["invoice.pdf"], "count": 3}
    assert document["related"]["hash"] == ["ab" * 32]
    assert document["related"]["ip"] == ["203.0.113.5"]

    bare = message_document(
        MessageRecord(
            evidence_path="case/mail.eml",
            evidence_sha256="0" * 64,
            evidence_format="eml",
            item_id="message",
        ),
        CaseContext(),
    )
    assert "attachments" not in bare["email"]
    assert "hops" not in bare["inbec"]
    assert bare["inbec"]["attachment"] == {"count": 0}


def test_related_hosts_are_names_never_ip_literals() -> None:
    record = MessageRecord(
        evidence_path="case/mail.eml",
        evidence_sha256="0" * 64,
        evidence_format="eml",
        item_id="message",
        message_id="<abc@mail.acrne-corp.com>",
        hops=[
            Hop(from_host="[203.0.113.7]", by_host="mx.example.net", ip=None, timestamp=None),
            Hop(from_host="192.0.2.1", by_host="IPv6:::ffff:192.0.2.9", ip=None, timestamp=None),
            Hop(from_host="relay.example.org.", by_host="mail1", ip=None, timestamp=None),
        ],
    )
    case = CaseContext(legit_domains=("acme-corp.com",))
    document = message_document(record, case)
    assert document["related"]["hosts"] == [
        "mx.example.net",
        "relay.example.org.",
        "mail.acrne-corp.com",
    ]
    assert document["inbec"]["lookalike"] == {
        "domains": ["acrne-corp.com"],
        "legit_domains": ["acme-corp.com"],
        "techniques": ["homoglyph", "similarity"],
        "sender": False,
    }


def test_a_date_header_days_after_delivery_is_not_the_message_time(corpus_dir: Path) -> None:
    """A sender cannot write after delivery: such a Date is forged or its clock wrong,
    and the message sits at its delivery time in the timeline (the Date kept as the
    origination time)."""
    path = corpus_dir / "eml" / "phishing_pot_sample-7058.eml"
    [record] = [e for e in iter_evidence([path]) if isinstance(e, MessageRecord)]
    document = message_document(record, CaseContext(), [])
    assert document["@timestamp"] == "2026-01-10T21:26:25.000+00:00"
    assert document["email"]["origination_timestamp"] == "2026-10-01T00:00:00.000+00:00"
    assert document["email"]["delivery_timestamp"] == "2026-01-10T21:26:25.000+00:00"
    assert record.warnings == [
        "Date header 2026-10-01T00:00:00+00:00 is 263 days after delivery "
        "2026-01-10T21:26:25+00:00; the delivery time is taken as the message's time"
    ]
    # A day late is clock drift, not a reason to distrust the Date.
    record.date = record.delivery_time + timedelta(hours=30)  # type: ignore[operator]
    assert record.timestamp == record.date
