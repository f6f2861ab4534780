"""Rule ``lookalike-domain``: domains that imitate a legitimate domain of the case.

Every host name of every message is compared with the case's legitimate domains through
:meth:`CaseContext.lookalike`: the domains of all address fields (From, Sender, Reply-To,
Return-Path, To, Cc, Bcc), the ``from`` and ``by`` hosts of Received headers (RFC 5321
section 4.4) and the host part of Message-ID (RFC 5322 section 3.6.4). Legitimate and
allowlisted domains, and their subdomains, are never reported.

One finding per lookalike registrable domain (Public Suffix List), raised in ``finish``
with the domain it imitates, how, where it was seen, and the messages. Severity is high,
critical when the domain appears in From.

Memory: per lookalike domain, its distinct addresses, up to 100 host names and up to
1,000 message references.

Limitations: only the matching engine of :mod:`inbec_export.domains` decides what is a
lookalike; host names in bodies and links are not looked at.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from inbec_export.case import CaseContext
from inbec_export.detections._common import (
    MAX_LISTED_VALUES,
    MessageSet,
    add_capped,
    join_places,
    match_evidence,
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
class _DomainSeen:
    match: LookalikeMatch
    places: dict[str, int] = field(default_factory=dict)
    hosts: dict[str, None] = field(default_factory=dict)
    addresses: set[str] = field(default_factory=set)
    messages: MessageSet = field(default_factory=MessageSet)


@register
class LookalikeDomainRule(Rule):
    """One finding per lookalike registrable domain seen anywhere in the headers."""

    id = "lookalike-domain"
    name = "Lookalike domain"
    severity = "high"
    description = (
        "A domain in an address field, a Received hop or a Message-ID imitates a "
        "legitimate domain of the case."
    )

    def __init__(self, case: CaseContext) -> None:
        super().__init__(case)
        self._seen: dict[str, _DomainSeen] = {}

    def observe(self, record: MessageRecord) -> Iterable[Finding]:
        hits = message_lookalikes(self.case, record)
        if not hits:
            return ()
        ref = MessageRef.of(record)
        for domain, hit in hits.items():
            seen = self._seen.get(domain)
            if seen is None:
                seen = self._seen[domain] = _DomainSeen(hit.match)
            for place in hit.places:
                seen.places[place] = seen.places.get(place, 0) + 1
            for host in hit.hosts:
                add_capped(seen.hosts, host)
            for _, address in hit.addresses:
                seen.addresses.add(address.address)
            seen.messages.add(ref)
        return ()

    def finish(self) -> Iterable[Finding]:
        for domain in sorted(self._seen):
            yield self._finding(domain, self._seen[domain])

    def _finding(self, domain: str, seen: _DomainSeen) -> Finding:
        messages = seen.messages
        places = sorted(seen.places, key=place_order)
        addresses = len(seen.addresses)
        counted = plural(messages.count, "message")
        if addresses:
            counted += " from " + plural(addresses, "address", "addresses")
        reason = (
            f"{_headline(domain, seen.match)}; in {join_places(places)}; {counted}, "
            f"first {when(messages.first_seen)}"
        )
        evidence: dict[str, object] = {
            "domain": domain,
            **match_evidence(seen.match),
            "places": {place: seen.places[place] for place in places},
            "hosts": sorted(seen.hosts),
            "addresses": sorted(seen.addresses)[:MAX_LISTED_VALUES],
            "address_count": addresses,
            **messages.evidence(),
        }
        return Finding(
            rule_id=self.id,
            rule_name=self.name,
            severity="critical" if "from" in seen.places else "high",
            reason=reason,
            key=domain,
            evidence=evidence,
            messages=messages.sorted_refs(),
            indicators=[Indicator("domain-name", domain)],
            first_seen=messages.first_seen,
            last_seen=messages.last_seen,
        )


def _headline(domain: str, match: LookalikeMatch) -> str:
    """The engine's one-line detail, which names the domain, else a short phrase."""
    if match.detail:
        return match.detail
    how = "+".join(match.techniques)
    return f"{domain} imitates {match.legit_domain}" + (f" ({how})" if how else "")
