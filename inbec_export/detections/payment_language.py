"""Rule ``payment-language``: the wording of payment fraud in a message.

The subject and the body text (as kept by the readers, up to ``BODY_CAP_CHARS``) are
searched for the phrases of :data:`PAYMENT_PHRASES`: changed bank details, IBAN, SWIFT,
sort code, wire, ACH, routing or account numbers, overdue invoices, urgency, gift cards,
W-2 and payroll changes. One finding per message that has any, raised as it streams past,
naming the phrases and where they were found. The phrases are searched in one pass, so
where two overlap the one listed first wins: "change of bank details" is not also
reported as "bank details".

IBANs written in the subject or body (ISO 13616: two-letter country code, two check
digits, then the national account number, printed in groups of four or written without
spaces) are read out too: a candidate counts only when its country is in
:data:`IBAN_LENGTHS`, its length is that country's and its check digits pass the mod-97
check (ISO 7064). They are listed, without spaces, in the evidence (``ibans``) and in the
reason after the phrases, and an IBAN alone counts as the phrase "IBAN": it is the account
the money is asked to go to.

Urgency alone in a message that comes through a mailing list (List-Id, List-Post,
Precedence list or bulk) gives no finding: digests and announcements say "urgent" all
the time and ask for no money.

Severity is high when the message has a payment phrase other than urgency ("urgent",
"asap") and its sender is a lookalike, or is on a legitimate domain that DMARC or
compauth refused (the money is asked for by someone posing as a party to the deal);
medium when such a phrase goes with a lookalike domain elsewhere in the message, a sender
outside the legitimate and allowlisted domains (only when the case names legitimate
domains), or failed authentication (as ``auth-failure`` counts it); else low. Urgency
alone stays low whatever goes with it: list digests and newsletters say "urgent" all the
time.

Limitations: English phrases plus a few German ones; plain words such as "invoice" or
"payment" are left out on purpose, since every supplier uses them. Text in attachments
is not searched. IBANs are read only in upper case, with single spaces (or none) between
the groups; the national account number's own format and check digits are not verified,
so a made-up number with the right length and IBAN check digits still counts.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator

from inbec_export.detections._common import (
    auth_failures,
    auth_label,
    is_list_message,
    iso,
    lookalike_of,
    message_lookalikes,
    refuses_from_domain,
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

#: Labels of urgency: alone they never make a finding more than low.
URGENCY_LABELS: frozenset[str] = frozenset({"urgent"})

#: IBAN length in characters, by country code (SWIFT IBAN registry): the SEPA countries
#: and a few more that BEC payments go to.
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "BA": 20, "BE": 16, "BG": 22, "BR": 29,
    "CH": 21, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "EE": 20, "ES": 24, "FI": 18,
    "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "HR": 21,
    "HU": 28, "IE": 22, "IL": 23, "IS": 26, "IT": 27, "LI": 21, "LT": 20, "LU": 20,
    "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MT": 31, "NL": 18, "NO": 15,
    "PL": 28, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24, "SE": 24, "SI": 19,
    "SK": 24, "SM": 27, "TR": 26, "UA": 29, "VA": 22, "XK": 20,
}  # fmt: skip

# A run of upper-case groups that starts like an IBAN; possessive, so a long run of
# digits costs one pass. Where the IBAN ends inside the run is decided by its length.
# The first letter comes before the look-behind (no letter or digit before it) so that
# the search skips to upper-case letters at once instead of trying every position.
_IBAN_RUN = re.compile(
    r"[A-Z](?<![A-Za-z0-9][A-Z])[A-Z][0-9]{2}[A-Z0-9]*+(?:[ \u00a0][A-Z0-9]++){0,10}"
    r"(?![A-Za-z0-9])"
)

# Upper-case letters become "A" and digits "0", everything else stays: a text whose
# image holds no "AA00" has no IBAN run, and this test is many times cheaper than the
# search on a long body.
_IBAN_SHAPES = str.maketrans(
    {
        **{chr(code): "A" for code in range(ord("A"), ord("Z") + 1)},
        **dict.fromkeys("0123456789", "0"),
    }
)

_LABELS: tuple[str, ...] = tuple(label for label, _ in PAYMENT_PHRASES)
_SCANNER = re.compile(
    "|".join(
        f"(?P<p{index}>{expression})" for index, (_, expression) in enumerate(PAYMENT_PHRASES)
    ),
    re.IGNORECASE,
)


#: For each phrase of :data:`PAYMENT_PHRASES`, in its order: the lower-cased starts of
#: the words it can begin with, the lower-cased words of which every match holds one,
#: and the words it holds as they are written (its case-sensitive parts). Kept in step
#: with the table; a test checks the fast scan against the plain one.
PHRASE_KEYS: tuple[tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]], ...] = (
    (("cha",), ("bank",), ()),
    (("new",), ("bank", "account"), ()),
    (("upd",), ("updat",), ()),
    (("ban",), ("bank",), ()),
    (("iba",), ("iban",), ()),
    (("swi", "bic"), ("swift", "bic"), ()),
    (("sor",), ("sort",), ()),
    (("wir",), ("wire",), ()),
    (("ach",), (), ("ACH",)),
    (("aba", "rou"), ("routing",), ()),
    (("acc",), ("account",), ()),
    (("ove", "out", "unp", "pas"), ("invoice", "payment", "balance"), ()),
    (("urg", "asa"), ("urgent", "asap"), ()),
    (("gif", "itu", "app", "goo", "ste", "ama"), ("card",), ()),
    (("w-2", "w2"), ("w-2",), ("W2",)),
    (("dir", "pay"), ("deposit", "payroll"), ()),
    (("neu", "geä", "änd"), ("bank",), ()),
)

_ANCHORS: tuple[str, ...] = tuple(sorted({word for _, words, _ in PHRASE_KEYS for word in words}))
_CASED_ANCHORS: tuple[str, ...] = tuple(
    sorted({word for _, _, words in PHRASE_KEYS for word in words})
)

# Characters that match an ASCII letter of the phrases case-insensitively but do not
# lower-case to it ("İ" also lower-cases to two characters): text with any of them is
# scanned the plain way, so that the fast scan never misses a phrase.
_CASE_ODDITIES = ("\u0130", "\u0131", "\u017f")


def payment_phrases(text: str) -> list[str]:
    """The labels of the payment phrases in ``text``, in :data:`PAYMENT_PHRASES` order.

    The result is that of one left-to-right, non-overlapping scan with every phrase, but
    a phrase is tried only when the text holds one of the words every match of it holds,
    and only where the text holds the start of a word it can begin with (see
    :data:`PHRASE_KEYS`; both found with plain substring search): many times faster on
    long bodies, most of which hold no phrase at all.
    """
    found: set[int] = set()
    for hit in _scan(text):
        if hit.lastgroup:
            found.add(int(hit.lastgroup[1:]))
    return [_LABELS[index] for index in sorted(found)]


def _scan(text: str) -> Iterator[re.Match[str]]:
    """The scanner's matches in ``text``, as ``_SCANNER.finditer`` gives them."""
    if any(odd in text for odd in _CASE_ODDITIES):
        yield from _SCANNER.finditer(text)
        return
    # Same length as ``text`` (no character above changes length when lower-cased).
    lowered = text.lower()
    present = {word for word in _ANCHORS if word in lowered}
    present.update(word for word in _CASED_ANCHORS if word in text)
    if not present:
        return
    starts = {
        start
        for starts, words, cased in PHRASE_KEYS
        if not present.isdisjoint(words) or not present.isdisjoint(cased)
        for start in starts
    }
    end = 0
    for start in _candidates(lowered, sorted(starts)):
        if start < end:
            continue
        hit = _SCANNER.match(text, start)
        if hit is not None:
            end = hit.end()
            yield hit


def _candidates(lowered: str, prefixes: Iterable[str]) -> list[int]:
    """Every position of ``lowered`` where one of ``prefixes`` begins, sorted."""
    positions: list[int] = []
    for prefix in prefixes:
        position = lowered.find(prefix)
        while position >= 0:
            positions.append(position)
            position = lowered.find(prefix, position + 1)
    positions.sort()
    return positions


def iban_checks(iban: str) -> bool:
    """True when ``iban`` (upper case, no spaces) has its country's length and its check
    digits pass mod 97 (ISO 13616, ISO 7064 MOD 97-10)."""
    if IBAN_LENGTHS.get(iban[:2]) != len(iban) or not iban.isalnum() or not iban.isascii():
        return False
    digits = "".join(str(int(char, 36)) for char in iban[4:] + iban[:4])
    return int(digits) % 97 == 1


def find_ibans(text: str) -> list[str]:
    """The valid IBANs in ``text``, without spaces, in order of first appearance.

    An IBAN must start a group and end one: ``LT12 1000 0111 0100 1000 BIC ...`` gives
    ``LT121000011101001000``, while a longer run of digits gives nothing.
    """
    if "AA00" not in text.translate(_IBAN_SHAPES):
        return []
    return _search_ibans(text)


def _search_ibans(text: str) -> list[str]:
    """What :func:`find_ibans` returns, found without its quick test."""
    found: dict[str, None] = {}
    position = 0
    while (run := _IBAN_RUN.search(text, position)) is not None:
        groups = run.group().replace("\u00a0", " ").split(" ")
        hit = _iban_at(groups)
        if hit is not None:
            iban, used = hit
            found.setdefault(iban)
            position = run.start() + len(" ".join(groups[:used]))
        elif len(groups) > 1:
            # An IBAN may start further on in the run: try again from its next group.
            position = run.start() + len(groups[0]) + 1
        else:
            position = run.end()
    return list(found)


def _iban_at(groups: list[str]) -> tuple[str, int] | None:
    """The IBAN the first groups make and how many groups it takes, or None."""
    expected = IBAN_LENGTHS.get(groups[0][:2])
    if expected is None:
        return None
    iban = ""
    for used, group in enumerate(groups, 1):
        iban += group
        if len(iban) >= expected:
            return (iban, used) if len(iban) == expected and iban_checks(iban) else None
    return None


def _phrase_list(labels: list[str], ibans: list[str]) -> str:
    """``change of bank details, IBAN LT121000011101001000, urgent``."""
    named = [f"IBAN {', '.join(ibans)}" if label == "IBAN" and ibans else label for label in labels]
    return ", ".join(named)


@register
class PaymentLanguageRule(Rule):
    """One finding per message with payment-fraud phrases."""

    id = "payment-language"
    per_message = True
    name = "Payment fraud language"
    severity = "medium"
    description = "Changed bank details, wire, IBAN, urgency, gift cards and similar wording."

    def observe(self, record: MessageRecord) -> Iterable[Finding]:
        subject_ibans = find_ibans(record.subject or "")
        body_ibans = find_ibans(record.body)
        ibans = list(dict.fromkeys(subject_ibans + body_ibans))
        in_subject = _with_iban(payment_phrases(record.subject or ""), bool(subject_ibans))
        in_body = _with_iban(payment_phrases(record.body), bool(body_ibans))
        if not in_subject and not in_body:
            return ()
        labels = [label for label in _LABELS if label in in_subject or label in in_body]
        if URGENCY_LABELS.issuperset(labels) and is_list_message(record):
            # "Urgent" in list traffic (digests, announcements) asks for no money.
            return ()
        sender = sender_of(record)
        lookalikes = sorted(message_lookalikes(self.case, record))
        outside = bool(
            self.case.legit_domains
            and sender is not None
            and not self.case.is_trusted(sender.domain)
        )
        failed = auth_failures(self.case, record)
        failures = list(dict.fromkeys(auth_label(r) for r in failed))
        posing = sender is not None and (
            lookalike_of(self.case, sender.domain) is not None
            or (self.case.is_legit(sender.domain) and refuses_from_domain(failed))
        )
        context: list[str] = []
        if lookalikes:
            context.append("lookalike " + ", ".join(lookalikes))
        if outside and sender is not None and registrable(sender.domain) not in lookalikes:
            context.append(f"outside sender {sender.domain}")
        if failures:
            context.append("auth " + ", ".join(failures))
        reason = (
            f"Payment language ({_phrase_list(labels, ibans)}) in "
            f"{record.subject or '(no subject)'!r} "
            f"from {sender.address if sender else 'an unknown sender'} at "
            f"{when(record.timestamp)}"
        )
        if context:
            reason += "; " + "; ".join(context)
        evidence: dict[str, object] = {
            "phrases": labels,
            "ibans": ibans,
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
        beyond_urgency = not URGENCY_LABELS.issuperset(labels)
        return [
            Finding(
                rule_id=self.id,
                rule_name=self.name,
                severity=(
                    "high"
                    if posing and beyond_urgency
                    else "medium"
                    if context and beyond_urgency
                    else "low"
                ),
                reason=reason,
                key=record.doc_id,
                evidence=evidence,
                messages=[MessageRef.of(record)],
                indicators=indicators,
                first_seen=record.timestamp,
                last_seen=record.timestamp,
            )
        ]


def _with_iban(labels: list[str], has_iban: bool) -> list[str]:
    """``labels`` with "IBAN" added, in its place, when the text holds an IBAN."""
    if not has_iban or "IBAN" in labels:
        return labels
    return [label for label in _LABELS if label in labels or label == "IBAN"]
