"""Rule ``suspicious-mailbox``: every mailbox on a lookalike domain.

For each address whose domain imitates a legitimate domain (see ``lookalike-domain``),
one finding in ``finish`` with the address fields it appeared in (RFC 5322 section 3.6.2
and 3.6.3, plus Return-Path), how many messages per field, the display names it used,
and when it was first and last seen. Severity is high when the mailbox sent or took
replies (From, Sender, Reply-To, Return-Path), medium when it was only a recipient.

Limitations: display names are listed up to 100 per mailbox, in the order first seen.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from inbec_export.case import CaseContext
from inbec_export.detections._common import (
    SENDER_FIELDS,
    MessageSet,
    add_capped,
    join_places,
    match_evidence,
    match_phrase,
    message_lookalikes,
    place_order,
    plural,
    when,
)
from inbec_export.detections.base import Rule, register
from inbec_export.domains import LookalikeMatch
from inbec_export.model import Finding, Indicator, MessageRecord, MessageRef

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class _Mailbox:
    domain: str
    match: LookalikeMatch
    fields: dict[str, int] = field(default_factory=dict)
    names: dict[str, None] = field(default_factory=dict)
    messages: MessageSet = field(default_factory=MessageSet)


@register
class SuspiciousMailboxRule(Rule):
    """One finding per address on a lookalike domain."""

    id = "suspicious-mailbox"
    name = "Mailbox on a lookalike domain"
    severity = "high"
    description = "An address on a domain that imitates a legitimate domain of the case."

    def __init__(self, case: CaseContext) -> None:
        super().__init__(case)
        self._mailboxes: dict[str, _Mailbox] = {}

    def observe(self, record: MessageRecord) -> Iterable[Finding]:
        hits = message_lookalikes(self.case, record)
        if not hits:
            return ()
        ref = MessageRef.of(record)
        for domain, hit in hits.items():
            fields_of: dict[str, set[str]] = {}
            for field_name, address in hit.addresses:
                mailbox = self._mailboxes.get(address.address)
                if mailbox is None:
                    mailbox = self._mailboxes[address.address] = _Mailbox(domain, hit.match)
                fields_of.setdefault(address.address, set()).add(field_name)
                if address.name:
                    add_capped(mailbox.names, address.name)
                mailbox.messages.add(ref)
            for address_text, field_names in fields_of.items():
                mailbox = self._mailboxes[address_text]
                for field_name in field_names:
                    mailbox.fields[field_name] = mailbox.fields.get(field_name, 0) + 1
        return ()

    def finish(self) -> Iterable[Finding]:
        for address in sorted(self._mailboxes):
            yield self._finding(address, self._mailboxes[address])

    def _finding(self, address: str, mailbox: _Mailbox) -> Finding:
        messages = mailbox.messages
        fields = sorted(mailbox.fields, key=place_order)
        names = list(mailbox.names)
        reason = (
            f"{address} on {mailbox.domain}, which {match_phrase(mailbox.match)}; "
            f"in {join_places(fields)} of {plural(messages.count, 'message')}"
        )
        if names:
            reason += ", as " + ", ".join(repr(name) for name in names[:5])
            if len(names) > 5:
                reason += f" and {len(names) - 5} more"
        reason += f"; first {when(messages.first_seen)}, last {when(messages.last_seen)}"
        sent = any(field_name in SENDER_FIELDS for field_name in fields)
        evidence: dict[str, object] = {
            "address": address,
            "domain": mailbox.domain,
            **match_evidence(mailbox.match),
            "fields": {field_name: mailbox.fields[field_name] for field_name in fields},
            "display_names": names,
            **messages.evidence(),
        }
        return Finding(
            rule_id=self.id,
            rule_name=self.name,
            severity="high" if sent else "medium",
            reason=reason,
            key=address,
            evidence=evidence,
            messages=messages.sorted_refs(),
            indicators=[Indicator("email-addr", address), Indicator("domain-name", mailbox.domain)],
            first_seen=messages.first_seen,
            last_seen=messages.last_seen,
        )
