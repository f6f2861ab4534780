"""Rules ``reply-to-mismatch``, ``freemail-reply-to`` and ``return-path-mismatch``.

Replies and bounces that go somewhere else than the From domain (RFC 5322 section 3.6.2
for Reply-To, RFC 5321 section 4.4 for Return-Path). The three rules share one module
because they share the comparison: registrable domains (Public Suffix List), so
``bounce.acme.com`` and ``acme.com`` are the same. Each rule raises, in ``finish``, one
finding per From domain and reply destination, with every message that shows it.

- ``reply-to-mismatch``: a Reply-To domain differs from the From domain. Medium; high
  when the Reply-To domain is a lookalike or the From domain is legitimate (someone
  writing as the organisation, answers going elsewhere). Freemail Reply-To domains are
  left to ``freemail-reply-to``, and pairs where both domains are legitimate or
  allowlisted are not reported. Nor is a Reply-To that is the address of the mailing list
  the message came through (a list that sets Reply-To to itself): on a message with
  List-Id, List-Post or Precedence ``list``/``bulk``, the List-Post ``mailto:`` address,
  an address on the host the List-Id is named under, or, when the message has neither
  field, a Reply-To that is also a To or Cc recipient. A lookalike Reply-To domain is
  reported even then.
- ``freemail-reply-to``: a Reply-To on a free webmail provider that is not one of the From
  addresses. High when From is a business (non-freemail) domain, else medium. Keyed by
  the Reply-To address, the attacker's mailbox.
- ``return-path-mismatch``: the Return-Path domain differs from From. Low: mailing
  services bounce to their own domains all the time; it matters next to other findings.

Messages without a From address are not compared.

Limitations: the list fields are written by the sender, so a message that names the
attacker's own domain in List-Id, or adds Precedence ``bulk`` and copies the Reply-To
address into Cc, hides that Reply-To from ``reply-to-mismatch`` unless the domain is a
lookalike; ``freemail-reply-to`` still sees a freemail one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from inbec_export.case import CaseContext
from inbec_export.detections._common import (
    MessageSet,
    add_capped,
    is_list_address,
    lookalike_of,
    match_phrase,
    plural,
    when,
)
from inbec_export.detections.base import Rule, register
from inbec_export.domains import LookalikeMatch, registrable
from inbec_export.model import Address, Finding, Indicator, MessageRecord, MessageRef, Severity

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class _Pair:
    from_domain: str
    target: str
    target_domain: str
    from_addresses: dict[str, None] = field(default_factory=dict)
    targets: dict[str, None] = field(default_factory=dict)
    messages: MessageSet = field(default_factory=MessageSet)


class _PathRule(Rule):
    """Collects (From domain, destination) pairs; subclasses choose the destination."""

    field_label = ""

    def __init__(self, case: CaseContext) -> None:
        super().__init__(case)
        self._pairs: dict[str, _Pair] = {}

    def destinations(self, record: MessageRecord, from_domain: str) -> list[Address]:
        """The addresses of ``record`` this rule reports against ``from_domain``."""
        raise NotImplementedError

    def pair_key(self, address: Address) -> str:
        """What a pair is keyed by on the destination side."""
        return registrable(address.domain)

    def observe(self, record: MessageRecord) -> Iterable[Finding]:
        senders = [address for address in record.from_ if address.domain]
        if not senders:
            return ()
        from_domain = registrable(senders[0].domain)
        ref = MessageRef.of(record)
        for address in self.destinations(record, from_domain):
            target = self.pair_key(address)
            key = f"{from_domain}>{target}"
            pair = self._pairs.get(key)
            if pair is None:
                pair = self._pairs[key] = _Pair(from_domain, target, registrable(address.domain))
            for sender in senders:
                add_capped(pair.from_addresses, sender.address)
            add_capped(pair.targets, address.address)
            pair.messages.add(ref)
        return ()

    def finish(self) -> Iterable[Finding]:
        for key in sorted(self._pairs):
            pair = self._pairs[key]
            match = lookalike_of(self.case, pair.target_domain)
            severity, reason = self.describe(pair, match)
            messages = pair.messages
            evidence: dict[str, object] = {
                "from_domain": pair.from_domain,
                f"{self.field_label}_domain": pair.target_domain,
                "from_addresses": sorted(pair.from_addresses),
                f"{self.field_label}_addresses": sorted(pair.targets),
                "lookalike": (
                    {"legit_domain": match.legit_domain, "techniques": list(match.techniques)}
                    if match
                    else None
                ),
                **messages.evidence(),
            }
            indicators = [Indicator("domain-name", pair.target_domain)]
            indicators += [Indicator("email-addr", a) for a in sorted(pair.targets)]
            yield Finding(
                rule_id=self.id,
                rule_name=self.name,
                severity=severity,
                reason=reason,
                key=key,
                evidence=evidence,
                messages=messages.sorted_refs(),
                indicators=indicators,
                first_seen=messages.first_seen,
                last_seen=messages.last_seen,
            )

    def describe(self, pair: _Pair, match: LookalikeMatch | None) -> tuple[Severity, str]:
        """Severity and reason of the finding of ``pair``."""
        raise NotImplementedError

    def _tail(self, pair: _Pair) -> str:
        targets = list(pair.targets)
        shown = ", ".join(targets[:3]) + (
            f" and {len(targets) - 3} more" if len(targets) > 3 else ""
        )
        messages = pair.messages
        return (
            f"{plural(messages.count, 'message')} ({shown}), first {when(messages.first_seen)}, "
            f"last {when(messages.last_seen)}"
        )


@register
class ReplyToMismatchRule(_PathRule):
    """Reply-To on another registrable domain than From."""

    id = "reply-to-mismatch"
    name = "Reply-To domain differs from From"
    severity = "medium"
    description = "Replies go to another domain than the one the message claims to be from."
    field_label = "reply_to"

    def destinations(self, record: MessageRecord, from_domain: str) -> list[Address]:
        found: list[Address] = []
        for address in record.reply_to:
            domain = registrable(address.domain) if address.domain else ""
            if not domain or domain == from_domain or self.case.is_freemail(domain):
                continue
            if self.case.is_trusted(domain) and self.case.is_trusted(from_domain):
                continue
            if is_list_address(record, address) and lookalike_of(self.case, domain) is None:
                continue
            found.append(address)
        return found

    def describe(self, pair: _Pair, match: LookalikeMatch | None) -> tuple[Severity, str]:
        reason = f"Reply-To on {pair.target_domain}"
        if match:
            reason += f" (which {match_phrase(match)})"
        reason += f" while From is on {pair.from_domain}; {self._tail(pair)}"
        high = match is not None or self.case.is_legit(pair.from_domain)
        return ("high" if high else "medium"), reason


@register
class FreemailReplyToRule(_PathRule):
    """Reply-To on a free webmail provider, other than the From address."""

    id = "freemail-reply-to"
    name = "Reply-To on a freemail provider"
    severity = "high"
    description = "Replies go to a free webmail mailbox that is not the sender's address."
    field_label = "reply_to"

    def pair_key(self, address: Address) -> str:
        return address.address

    def destinations(self, record: MessageRecord, from_domain: str) -> list[Address]:
        senders = {address.address for address in record.from_}
        return [
            address
            for address in record.reply_to
            if address.domain
            and address.address not in senders
            and self.case.is_freemail(address.domain)
        ]

    def describe(self, pair: _Pair, match: LookalikeMatch | None) -> tuple[Severity, str]:
        business = not self.case.is_freemail(pair.from_domain)
        kind = "business domain" if business else "freemail domain"
        reason = (
            f"Reply-To {pair.target} on freemail {pair.target_domain} while From is on "
            f"{kind} {pair.from_domain}; {self._tail(pair)}"
        )
        return ("high" if business else "medium"), reason


@register
class ReturnPathMismatchRule(_PathRule):
    """Return-Path on another registrable domain than From."""

    id = "return-path-mismatch"
    name = "Return-Path domain differs from From"
    severity = "low"
    description = "Bounces go to another domain than the one the message claims to be from."
    field_label = "return_path"

    def destinations(self, record: MessageRecord, from_domain: str) -> list[Address]:
        found: list[Address] = []
        for address in record.return_path:
            domain = registrable(address.domain) if address.domain else ""
            if not domain or domain == from_domain:
                continue
            if self.case.is_trusted(domain) and self.case.is_trusted(from_domain):
                continue
            found.append(address)
        return found

    def describe(self, pair: _Pair, match: LookalikeMatch | None) -> tuple[Severity, str]:
        reason = f"Return-Path on {pair.target_domain}"
        if match:
            reason += f" (which {match_phrase(match)})"
        reason += f" while From is on {pair.from_domain}; {self._tail(pair)}"
        return "low", reason
