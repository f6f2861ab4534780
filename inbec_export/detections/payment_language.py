"""Rule ``payment-language``: the wording of payment fraud in a message.

The subject and the body text (as kept by the readers, up to ``BODY_CAP_CHARS``) are
searched for the phrases of :data:`PAYMENT_PHRASES`: changed bank details, IBAN, SWIFT,
sort code, wire, ACH, routing or account numbers, overdue invoices, urgency, gift cards,
W-2 and payroll changes. One finding per message that has any, raised as it streams past,
naming the phrases and where they were found. The phrases are searched in one pass, so
where two overlap the one listed first wins: "change of bank details" is not also
reported as "bank details".

Severity is medium when the message also involves a lookalike domain, comes from a sender
outside the legitimate and allowlisted domains (only when the case names legitimate
domains), or failed authentication (as ``auth-failure`` counts it); else low.

Limitations: English phrases plus a few German ones; plain words such as "invoice" or
"payment" are left out on purpose, since every supplier uses them. Text in attachments
is not searched.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

from inbec_export.detections._common import (
    auth_failures,
    auth_label,
    iso,
    message_lookalikes,
    sender_of,
    when,
)
from inbec_export.detections.base import Rule, register
from inbec_export.domains import registrable
from inbec_export.model import Finding, Indicator, MessageRecord, MessageRef

logger = logging.getLogger(__name__)

#: Phrases of payment fraud: (label reported, regular expression, case-insensitive unless
#: the expression turns that off with ``(?-i:...)``).
PAYMENT_PHRASES: tuple[tuple[str, str], ...] = (
    (
        "change of bank details",
        r"\bchang(?:e|ed|es|ing)\s+(?:of\s+|in\s+|to\s+)?(?:our\s+|my\s+|the\s+)?"
        r"bank(?:ing)?\s+(?:details|information|info|account)",
    ),
    (
        "new bank account",
        r"\bnew\s+bank(?:ing)?\s+(?:details|account)|\bnew\s+account\s+(?:details|number)",
    ),
    (
        "updated payment details",
        r"\bupdated?\s+(?:bank(?:ing)?|payment|remittance|wire)\s+"
        r"(?:details|information|instructions)",
    ),
    ("bank details", r"\bbank(?:ing)?\s+(?:details|information|instructions|coordinates)"),
    ("IBAN", r"\biban\b"),
    ("SWIFT/BIC", r"\bswift(?:\s*/\s*bic|\s+code)\b|\bbic\s+code\b"),
    ("sort code", r"\bsort\s+code\b"),
    ("wire", r"\bwire[ds]?\b"),
    ("ACH", r"(?-i:\bACH\b)"),
    ("routing number", r"\b(?:aba\s+)?routing\s+(?:number|no\b\.?|#)"),
    ("account number", r"\baccount\s+(?:number|no\b\.?|#)"),
    (
        "overdue invoice",
        r"\b(?:overdue|outstanding|unpaid|past[\s-]+due)\s+(?:invoice|payment|balance)s?\b",
    ),
    ("urgent", r"\burgent(?:ly)?\b|\basap\b"),
    (
        "gift cards",
        r"\b(?:gift|itunes|apple|google\s+play|steam|amazon)\s+cards?\b",
    ),
    ("W-2", r"\bw-2s?\b|(?-i:\bW2s?\b)"),
    (
        "payroll change",
        r"\b(?:direct\s+deposit|payroll)\s+(?:change|update|details|information|account)",
    ),
    (
        "Bankverbindung",
        r"\b(?:neue|geänderte)\s+bankverbindung\b|\bänderung\s+(?:der|unserer)\s+"
        r"bankverbindung\b",
    ),
)

_LABELS: tuple[str, ...] = tuple(label for label, _ in PAYMENT_PHRASES)
_SCANNER = re.compile(
    "|".join(
        f"(?P<p{index}>{expression})" for index, (_, expression) in enumerate(PAYMENT_PHRASES)
    ),
    re.IGNORECASE,
)


def payment_phrases(text: str) -> list[str]:
    """The labels of the payment phrases in ``text``, in :data:`PAYMENT_PHRASES` order."""
    found: set[int] = set()
    for hit in _SCANNER.finditer(text):
        if hit.lastgroup:
            found.add(int(hit.lastgroup[1:]))
    return [_LABELS[index] for index in sorted(found)]


@register
class PaymentLanguageRule(Rule):
    """One finding per message with payment-fraud phrases."""

    id = "payment-language"
    name = "Payment fraud language"
    severity = "medium"
    description = "Changed bank details, wire, IBAN, urgency, gift cards and similar wording."

    def observe(self, record: MessageRecord) -> Iterable[Finding]:
        in_subject = payment_phrases(record.subject or "")
        in_body = payment_phrases(record.body)
        if not in_subject and not in_body:
            return ()
        labels = [label for label in _LABELS if label in in_subject or label in in_body]
        sender = sender_of(record)
        lookalikes = sorted(message_lookalikes(self.case, record))
        outside = bool(
            self.case.legit_domains
            and sender is not None
            and not self.case.is_trusted(sender.domain)
        )
        failures = list(dict.fromkeys(auth_label(r) for r in auth_failures(self.case, record)))
        context: list[str] = []
        if lookalikes:
            context.append("lookalike " + ", ".join(lookalikes))
        if outside and sender is not None and registrable(sender.domain) not in lookalikes:
            context.append(f"outside sender {sender.domain}")
        if failures:
            context.append("auth " + ", ".join(failures))
        reason = (
            f"Payment language ({', '.join(labels)}) in {record.subject or '(no subject)'!r} "
            f"from {sender.address if sender else 'an unknown sender'} at "
            f"{when(record.timestamp)}"
        )
        if context:
            reason += "; " + "; ".join(context)
        evidence: dict[str, object] = {
            "phrases": labels,
            "in_subject": in_subject,
            "in_body": in_body,
            "body_truncated": record.body_truncated,
            "sender": sender.address if sender else None,
            "outside_sender": outside,
            "lookalike_domains": lookalikes,
            "auth_failures": failures,
            "subject": record.subject,
            "timestamp": iso(record.timestamp),
        }
        indicators = [Indicator("domain-name", domain) for domain in lookalikes]
        return [
            Finding(
                rule_id=self.id,
                rule_name=self.name,
                severity="medium" if context else "low",
                reason=reason,
                key=record.doc_id,
                evidence=evidence,
                messages=[MessageRef.of(record)],
                indicators=indicators,
                first_seen=record.timestamp,
                last_seen=record.timestamp,
            )
        ]
