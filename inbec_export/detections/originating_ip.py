"""Rule ``originating-ip``: client IP addresses from X-Originating-IP.

Webmail and Exchange record the submitting client's address in X-Originating-IP (and
some servers in X-Sender-IP); the readers put them in ``MessageRecord.originating_ips``.
One finding per IP address in ``finish``, with its messages, senders, first and last
seen. Severity is low, medium when any of its messages involved a lookalike domain or
failed authentication (see ``lookalike-domain`` and ``auth-failure`` for the tests).

Limitations: the header is written by the sender's side and can be forged or absent;
private addresses are reported too (``global: false`` in the evidence), since an internal
address on a message claiming to come from outside is itself worth a look.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from inbec_export.case import CaseContext
from inbec_export.detections._common import (
    MessageSet,
    add_capped,
    auth_failures,
    ip_indicator,
    message_lookalikes,
    plural,
    sender_of,
    when,
)
from inbec_export.detections.base import Rule, register
from inbec_export.model import Finding, MessageRecord, MessageRef

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class _IpSeen:
    senders: dict[str, None] = field(default_factory=dict)
    lookalike_domains: dict[str, None] = field(default_factory=dict)
    lookalike_messages: int = 0
    auth_failure_messages: int = 0
    messages: MessageSet = field(default_factory=MessageSet)


@register
class OriginatingIpRule(Rule):
    """One finding per X-Originating-IP address."""

    id = "originating-ip"
    name = "Originating IP address"
    severity = "low"
    description = "The client IP address that submitted messages (X-Originating-IP)."

    def __init__(self, case: CaseContext) -> None:
        super().__init__(case)
        self._ips: dict[str, _IpSeen] = {}

    def observe(self, record: MessageRecord) -> Iterable[Finding]:
        if not record.originating_ips:
            return ()
        ref = MessageRef.of(record)
        sender = sender_of(record)
        lookalikes = sorted(message_lookalikes(self.case, record))
        failed = bool(auth_failures(self.case, record))
        for ip in dict.fromkeys(record.originating_ips):
            seen = self._ips.get(ip)
            if seen is None:
                seen = self._ips[ip] = _IpSeen()
            if sender is not None:
                add_capped(seen.senders, sender.address)
            for domain in lookalikes:
                add_capped(seen.lookalike_domains, domain)
            seen.lookalike_messages += bool(lookalikes)
            seen.auth_failure_messages += failed
            seen.messages.add(ref)
        return ()

    def finish(self) -> Iterable[Finding]:
        for ip in sorted(self._ips, key=_ip_order):
            yield self._finding(ip, self._ips[ip])

    def _finding(self, ip: str, seen: _IpSeen) -> Finding:
        messages = seen.messages
        senders = sorted(seen.senders)
        reason = f"{ip} in X-Originating-IP of {plural(messages.count, 'message')}"
        if senders:
            reason += " from " + ", ".join(senders[:3])
            if len(senders) > 3:
                reason += f" and {len(senders) - 3} more"
        reason += f", first {when(messages.first_seen)}, last {when(messages.last_seen)}"
        if seen.lookalike_messages:
            reason += f"; {seen.lookalike_messages} with a lookalike domain"
        if seen.auth_failure_messages:
            reason += f"; {seen.auth_failure_messages} failing authentication"
        evidence: dict[str, object] = {
            "ip": ip,
            "global": ipaddress.ip_address(ip).is_global,
            "senders": senders,
            "lookalike_domains": sorted(seen.lookalike_domains),
            "lookalike_messages": seen.lookalike_messages,
            "auth_failure_messages": seen.auth_failure_messages,
            **messages.evidence(),
        }
        raised = seen.lookalike_messages or seen.auth_failure_messages
        return Finding(
            rule_id=self.id,
            rule_name=self.name,
            severity="medium" if raised else "low",
            reason=reason,
            key=ip,
            evidence=evidence,
            messages=messages.sorted_refs(),
            indicators=[ip_indicator(ip)],
            first_seen=messages.first_seen,
            last_seen=messages.last_seen,
        )


def _ip_order(ip: str) -> tuple[int, int]:
    address = ipaddress.ip_address(ip)
    return (address.version, int(address))
