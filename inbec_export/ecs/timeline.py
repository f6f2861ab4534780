"""Timeline events in Timesketch's import format, built from ECS documents.

Each event has ``message``, ``datetime`` (ISO 8601 string with offset), ``timestamp``
(integer microseconds since the epoch) and ``timestamp_desc``; field names are flat and
none starts with ``_`` (the importer drops those). ``inbec_doc_id`` is the id of the ECS
document the event comes from, so the timeline and the search index can be joined.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from inbec_export.model import Finding, MessageRecord

#: What each time of a message means, as Timesketch shows it in ``timestamp_desc``.
MESSAGE_TIMES: tuple[tuple[str, str], ...] = (
    ("date", "Message sent (Date header)"),
    ("delivery_time", "Message delivered"),
    ("submit_time", "Message submitted"),
)

Event = dict[str, Any]


def micros(value: datetime) -> int:
    """Microseconds since the Unix epoch of an aware datetime."""
    delta = value.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def message_events(record: MessageRecord, rule_ids: list[str]) -> list[Event]:
    """One event per distinct time the message carries (sent, delivered, submitted)."""
    events: list[Event] = []
    seen: set[datetime] = set()
    sender = record.from_[0].address if record.from_ else ""
    base: Event = {
        "message": f"{sender or '(no sender)'}: {record.subject or '(no subject)'}",
        "data_type": "email:message",
        "inbec_doc_id": record.doc_id,
        "email_from": sender,
        "email_to": ", ".join(a.address for a in record.to if a.address),
        "email_subject": record.subject or "",
        "email_message_id": record.message_id or "",
        "evidence_path": record.evidence_path,
        "evidence_item": record.item_id,
        "inbec_rule_ids": ", ".join(rule_ids),
    }
    for attribute, description in MESSAGE_TIMES:
        value: datetime | None = getattr(record, attribute)
        if value is None or value in seen:
            continue
        seen.add(value)
        events.append(
            {
                **base,
                "datetime": value.isoformat(),
                "timestamp": micros(value),
                "timestamp_desc": description,
            }
        )
    return events


def finding_event(finding: Finding) -> Event | None:
    """The event of a finding at its first message's time, or None when it has no time."""
    when = finding.timestamp
    if when is None:
        return None
    return {
        "message": f"[{finding.severity}] {finding.rule_name}: {finding.reason}",
        "datetime": when.isoformat(),
        "timestamp": micros(when),
        "timestamp_desc": "Finding (first message)",
        "data_type": "inbec:finding",
        "inbec_doc_id": finding.doc_id,
        "rule_id": finding.rule_id,
        "rule_name": finding.rule_name,
        "severity": finding.severity,
        "indicators": ", ".join(i.value for i in finding.indicators),
        "message_doc_ids": ", ".join(r.doc_id for r in finding.messages[:50]),
    }
