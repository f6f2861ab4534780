"""Rule ``lookalike-message``: each message that involves a lookalike domain.

Raised as the message streams past (one finding per message, keyed by its document id),
naming every lookalike domain of the message and the places it was seen in: address
fields, Received hops (RFC 5321 section 4.4) and the Message-ID host (RFC 5322 section
3.6.4). Severity is high, critical when a lookalike domain is in From.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from inbec_export.detections._common import (
    iso,
    join_places,
    match_evidence,
    message_lookalikes,
    place_order,
    sender_of,
    when,
)
from inbec_export.detections.base import Rule, register
from inbec_export.model import Finding, Indicator, MessageRecord, MessageRef

logger = logging.getLogger(__name__)


@register
class LookalikeMessageRule(Rule):
    """One finding per message that names a lookalike domain anywhere in its headers."""

    id = "lookalike-message"
    per_message = True
    name = "Message involving a lookalike domain"
    severity = "high"
    description = "A message whose addresses, hops or Message-ID use a lookalike domain."

    def observe(self, record: MessageRecord) -> Iterable[Finding]:
        hits = message_lookalikes(self.case, record)
        if not hits:
            return ()
        ref = MessageRef.of(record)
        sender = sender_of(record)
        domains = sorted(hits)
        parts = [
            f"{domain} (imitates {hits[domain].match.legit_domain}) in "
            f"{join_places(hits[domain].places)}"
            for domain in domains
        ]
        reason = (
            f"Message {record.subject or '(no subject)'!r} from "
            f"{sender.address if sender else 'an unknown sender'} at {when(record.timestamp)} "
            f"involves " + "; ".join(parts)
        )
        places: dict[str, list[str]] = {}
        for domain in domains:
            for place in hits[domain].places:
                places.setdefault(place, []).append(domain)
        evidence: dict[str, object] = {
            "domains": {
                domain: {
                    **match_evidence(hits[domain].match),
                    "places": sorted(hits[domain].places, key=place_order),
                    "hosts": sorted(hits[domain].hosts),
                    "addresses": sorted({a.address for _, a in hits[domain].addresses}),
                }
                for domain in domains
            },
            "places": {place: places[place] for place in sorted(places, key=place_order)},
            "sender": sender.address if sender else None,
            "subject": record.subject,
            "timestamp": iso(record.timestamp),
        }
        in_from = "from" in places
        return [
            Finding(
                rule_id=self.id,
                rule_name=self.name,
                severity="critical" if in_from else "high",
                reason=reason,
                key=record.doc_id,
                evidence=evidence,
                messages=[ref],
                indicators=[Indicator("domain-name", domain) for domain in domains],
                first_seen=record.timestamp,
                last_seen=record.timestamp,
            )
        ]
