"""Rule ``display-name-impersonation``: a legitimate person's name on an outside address.

A display name (RFC 5322 section 3.4) seen with an address on a legitimate domain, in any
address field, is the name of someone in the organisation. When the same name appears
with an address outside the legitimate and allowlisted domains, the rule raises one
finding per (name, outside address) in ``finish``, so it does not matter whether the
legitimate or the outside use comes first in the evidence.

Names are compared after normalisation: Unicode NFKC, case folding, quotes and
parenthesised comments (``(CEO)``, ``(External)``) removed, dots and commas treated as
spaces, whitespace collapsed, and ``Last, First`` read as ``First Last``. Names that
contain ``@`` (an address used as a name) and names of fewer than two words are ignored:
a first name alone, ``Accounts`` or ``Admin`` matches too many unrelated people.

Severity is critical when the outside address is on a lookalike domain, high when the
name was used in From, Sender or Reply-To, medium when only in recipient fields.

Memory: one entry per distinct (normalised name, outside address) pair, each with up to
1,000 message references, and one entry per name seen on a legitimate address.

Limitations: names that differ by more than the normalisation (nicknames, initials,
transliterations, homoglyphs in the name) are not matched.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field

from inbec_export.case import CaseContext
from inbec_export.detections._common import (
    MessageSet,
    add_capped,
    join_places,
    lookalike_of,
    match_phrase,
    place_order,
    plural,
    when,
)
from inbec_export.detections.base import Rule, register
from inbec_export.model import Finding, Indicator, MessageRecord, MessageRef, Severity

logger = logging.getLogger(__name__)

#: Fewest words a display name needs to be compared.
MIN_NAME_WORDS = 2

#: Address fields where a display name is the sender presenting itself.
PRESENTING_FIELDS = frozenset({"from", "sender", "reply_to"})

_QUOTES = str.maketrans({char: " " for char in "\"'`\u2018\u2019\u201c\u201d\u00ab\u00bb"})
_COMMENT = re.compile(r"\([^()]*\)|\[[^\[\]]*\]")
_SEPARATORS = re.compile(r"[.;]")


def normalise_name(name: str) -> str | None:
    """The comparable form of a display name, or None when it is not worth comparing."""
    text = unicodedata.normalize("NFKC", name).translate(_QUOTES).casefold()
    if "@" in text:
        return None
    text = _COMMENT.sub(" ", text)
    if text.count(",") == 1:
        last, first = text.split(",")
        text = f"{first} {last}"
    words = _SEPARATORS.sub(" ", text.replace(",", " ")).split()
    if len(words) < MIN_NAME_WORDS:
        return None
    return " ".join(words)


@dataclass(slots=True)
class _OutsideUse:
    domain: str
    names: dict[str, None] = field(default_factory=dict)
    fields: dict[str, int] = field(default_factory=dict)
    messages: MessageSet = field(default_factory=MessageSet)


@register
class DisplayNameImpersonationRule(Rule):
    """A display name of a legitimate address used with an outside address."""

    id = "display-name-impersonation"
    name = "Display name impersonation"
    severity = "high"
    description = (
        "A name used by an address on a legitimate domain appears with an address "
        "outside the legitimate and allowlisted domains."
    )

    def __init__(self, case: CaseContext) -> None:
        super().__init__(case)
        self._legit: dict[str, dict[str, None]] = {}
        self._legit_names: dict[str, dict[str, None]] = {}
        self._outside: dict[tuple[str, str], _OutsideUse] = {}

    def observe(self, record: MessageRecord) -> Iterable[Finding]:
        ref: MessageRef | None = None
        seen_fields: dict[tuple[str, str], set[str]] = {}
        for field_name, address in record.all_addresses():
            if not address.name or not address.domain:
                continue
            name = normalise_name(address.name)
            if name is None:
                continue
            if self.case.is_legit(address.domain):
                add_capped(self._legit.setdefault(name, {}), address.address)
                add_capped(self._legit_names.setdefault(name, {}), address.name)
                continue
            if self.case.is_trusted(address.domain):
                continue
            key = (name, address.address)
            use = self._outside.get(key)
            if use is None:
                use = self._outside[key] = _OutsideUse(address.domain)
            add_capped(use.names, address.name)
            seen_fields.setdefault(key, set()).add(field_name)
            ref = ref or MessageRef.of(record)
            use.messages.add(ref)
        for key, field_names in seen_fields.items():
            use = self._outside[key]
            for field_name in field_names:
                use.fields[field_name] = use.fields.get(field_name, 0) + 1
        return ()

    def finish(self) -> Iterable[Finding]:
        for key in sorted(self._outside):
            name, address = key
            if name in self._legit:
                yield self._finding(name, address, self._outside[key])

    def _finding(self, name: str, address: str, use: _OutsideUse) -> Finding:
        legit = sorted(self._legit[name])
        fields = sorted(use.fields, key=place_order)
        match = lookalike_of(self.case, use.domain)
        messages = use.messages
        names = sorted(use.names)
        shown = names[0]
        reason = (
            f"{shown!r} (the name of {', '.join(legit[:3])}"
            + (f" and {len(legit) - 3} more" if len(legit) > 3 else "")
            + f") with outside address {address}"
            + (f" on {use.domain}, which {match_phrase(match)}" if match else "")
            + f"; in {join_places(fields)} of {plural(messages.count, 'message')}, "
            + f"first {when(messages.first_seen)}"
        )
        severity: Severity
        if match is not None:
            severity = "critical"
        elif PRESENTING_FIELDS.intersection(fields):
            severity = "high"
        else:
            severity = "medium"
        evidence: dict[str, object] = {
            "normalised_name": name,
            "display_names": names,
            "legit_addresses": legit,
            "legit_display_names": sorted(self._legit_names[name]),
            "address": address,
            "domain": use.domain,
            "fields": {field_name: use.fields[field_name] for field_name in fields},
            "lookalike": (
                {"legit_domain": match.legit_domain, "techniques": list(match.techniques)}
                if match
                else None
            ),
            **messages.evidence(),
        }
        return Finding(
            rule_id=self.id,
            rule_name=self.name,
            severity=severity,
            reason=reason,
            key=f"{name}|{address}",
            evidence=evidence,
            messages=messages.sorted_refs(),
            indicators=[Indicator("email-addr", address), Indicator("domain-name", use.domain)],
            first_seen=messages.first_seen,
            last_seen=messages.last_seen,
        )
