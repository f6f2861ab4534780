"""Rule ``auth-failure``: messages whose sender authentication failed.

A result counts as a failure when the case's policy (``CaseContext.auth_failures``,
default SPF fail/softfail, DKIM fail, DMARC fail, compauth fail) lists it for its method.

Which results count: only those the receiving server wrote itself. That is the topmost
Authentication-Results field (RFC 8601 section 5: the receiver adds its field above the
ones already there and must not trust fields it did not add), together with any other
Authentication-Results field carrying the same authserv-id, and the topmost Received-SPF
field (RFC 7208 section 9.1). Fields lower down were written by earlier hops, possibly by
the sender itself, and ARC-Authentication-Results (RFC 8617) records what intermediaries
saw before forwarding: a failure there is often the forwarding itself. Those failures are
listed in the evidence as ``other_failures`` but do not raise a finding on their own.

Severity is high when DMARC or compauth failed (the From domain was not authenticated),
or when a failing result speaks for a legitimate domain of the case; else medium.

Limitations: when a third-party gateway sits in front of the mailbox provider, the
topmost verdict may be the provider's view of the gateway hop (failing SPF for every
message); tune the policy with the case's auth failure settings in that case.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from inbec_export.detections._common import (
    auth_evidence,
    auth_label,
    counted_auth_results,
    is_failure,
    iso,
    refuses_from_domain,
    sender_of,
    when,
)
from inbec_export.detections.base import Rule, register
from inbec_export.model import Finding, Indicator, MessageRecord, MessageRef

logger = logging.getLogger(__name__)


@register
class AuthFailureRule(Rule):
    """One finding per message whose receiving server recorded a failing result."""

    id = "auth-failure"
    per_message = True
    name = "Sender authentication failure"
    severity = "medium"
    description = "SPF, DKIM, DMARC or compauth failed at the receiving server."

    def observe(self, record: MessageRecord) -> Iterable[Finding]:
        counted = counted_auth_results(record)
        failures = [result for result in counted if is_failure(self.case, result)]
        if not failures:
            return ()
        counted_ids = {id(result) for result in counted}
        others = [
            result
            for result in record.auth_results
            if id(result) not in counted_ids and is_failure(self.case, result)
        ]
        sender = sender_of(record)
        labels = list(dict.fromkeys(auth_label(result) for result in failures))
        servers = sorted({r.authserv_id for r in failures if r.authserv_id})
        reason = (
            ", ".join(labels)
            + (f" at {', '.join(servers)}" if servers else "")
            + f" for {record.subject or '(no subject)'!r} from "
            + f"{sender.address if sender else 'an unknown sender'} at {when(record.timestamp)}"
        )
        high = refuses_from_domain(failures) or any(self.case.is_legit(r.domain) for r in failures)
        domains = sorted({r.domain for r in failures if r.domain})
        evidence: dict[str, object] = {
            "failures": [auth_evidence(result) for result in failures],
            "other_failures": [auth_evidence(result) for result in others],
            "methods": sorted({r.method for r in failures}),
            "sender": sender.address if sender else None,
            "subject": record.subject,
            "timestamp": iso(record.timestamp),
        }
        return [
            Finding(
                rule_id=self.id,
                rule_name=self.name,
                severity="high" if high else "medium",
                reason=reason,
                key=record.doc_id,
                evidence=evidence,
                messages=[MessageRef.of(record)],
                indicators=[Indicator("domain-name", domain) for domain in domains],
                first_seen=record.timestamp,
                last_seen=record.timestamp,
            )
        ]
