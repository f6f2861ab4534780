"""Helpers the detection rules share: hosts, lookalikes, auth verdicts, mailing lists, caps."""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import unquote

from inbec_export.case import CaseContext
from inbec_export.domains import FULL_STOPS, LookalikeMatch, registrable
from inbec_export.model import (
    ADDRESS_FIELDS,
    Address,
    AuthResult,
    Indicator,
    MessageRecord,
    MessageRef,
)

logger = logging.getLogger(__name__)

#: Most message references one finding lists; the true count is in its evidence.
MAX_MESSAGE_REFS = 1_000

#: Most distinct values (addresses, names, hosts) one finding lists in its evidence.
MAX_LISTED_VALUES = 100

#: Places a domain can be seen in a message, in the order they are reported.
PLACES: tuple[str, ...] = (*ADDRESS_FIELDS, "received", "message_id")

#: Address fields that speak for the sender rather than the recipients.
SENDER_FIELDS: tuple[str, ...] = ("from", "sender", "reply_to", "return_path")


def when(value: datetime | None) -> str:
    """A time for a reason line: ``2024-03-05 09:12 UTC``."""
    if value is None:
        return "unknown time"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def iso(value: datetime | None) -> str | None:
    """ISO 8601 (UTC, seconds) for evidence values, or None."""
    return value.astimezone(UTC).isoformat(timespec="seconds") if value is not None else None


def plural(count: int, word: str, many: str | None = None) -> str:
    """``1 message``, ``3 messages`` (``many`` for irregular plurals)."""
    return f"{count} {word if count == 1 else (many or word + 's')}"


def join_places(places: Iterable[str]) -> str:
    """Places in report order, comma-separated."""
    return ", ".join(sorted(set(places), key=place_order))


def place_order(place: str) -> int:
    """Sort key that puts places in the order of :data:`PLACES`."""
    return PLACES.index(place) if place in PLACES else len(PLACES)


def add_capped(values: dict[str, None], value: str, cap: int = MAX_LISTED_VALUES) -> None:
    """Add ``value`` to an insertion-ordered set unless it already holds ``cap`` values."""
    if value not in values and len(values) < cap:
        values[value] = None


#: The only characters of an IPv4 literal (an IPv6 literal always holds a colon).
_IPV4_CHARACTERS = frozenset("0123456789.")


def is_hostname(host: str | None) -> bool:
    """True for a dotted host name; False for IP literals and single labels."""
    if not host or "." not in host.translate(FULL_STOPS).strip("."):
        return False
    literal = host.strip("[]")
    # Most hosts are names: answered without parsing them as an address (which costs
    # an exception each time).
    if ":" not in literal and not _IPV4_CHARACTERS.issuperset(literal):
        return True
    try:
        ipaddress.ip_address(literal)
    except ValueError:
        return True
    return False


def sender_of(record: MessageRecord) -> Address | None:
    """The first From address that has an address, else the first Sender one."""
    for address in (*record.from_, *record.sender):
        if address.address:
            return address
    return None


def message_hosts(record: MessageRecord) -> Iterator[tuple[str, str, Address | None]]:
    """Yield ``(place, host, address)`` for every host name of a message.

    Address fields give the domain of each address, Received headers their ``from`` and
    ``by`` hosts, and Message-ID the part after its last ``@``. ``address`` is set only for
    address fields.
    """
    for field_name, address in record.all_addresses():
        if address.domain:
            yield field_name, address.domain, address
    for hop in record.hops:
        for host in (hop.from_host, hop.by_host):
            if host:
                yield "received", host, None
    if record.message_id and "@" in record.message_id:
        yield "message_id", record.message_id.rpartition("@")[2].strip("<> ").lower(), None


def lookalike_of(case: CaseContext, host: str | None) -> LookalikeMatch | None:
    """The lookalike match of ``host``; never one for a legitimate or allowlisted domain
    (but for one written with characters that map away, see ``hidden-characters``)."""
    if not host or not is_hostname(host) or (host.isascii() and case.is_trusted(host)):
        return None
    return case.lookalike(host)


@dataclass(slots=True)
class LookalikeHit:
    """One lookalike registrable domain in one message: where and under which hosts."""

    match: LookalikeMatch
    places: list[str] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)
    addresses: list[tuple[str, Address]] = field(default_factory=list)


def message_lookalikes(case: CaseContext, record: MessageRecord) -> dict[str, LookalikeHit]:
    """The lookalike registrable domains of a message, each with its places and hosts.

    Keyed by the match's domain: the registrable domain the attacker controls (for a
    legitimate name written in a subdomain, ``acme.com.evil.net``, that is ``evil.net``).
    """
    hits: dict[str, LookalikeHit] = {}
    for place, host, address in message_hosts(record):
        match = lookalike_of(case, host)
        if match is None:
            continue
        hit = hits.setdefault(match.domain or registrable(host), LookalikeHit(match))
        if place not in hit.places:
            hit.places.append(place)
        if host not in hit.hosts:
            hit.hosts.append(host)
        if address is not None and (place, address) not in hit.addresses:
            hit.addresses.append((place, address))
    return hits


def match_phrase(match: LookalikeMatch) -> str:
    """``imitates acme-corp.com (homoglyph)``: the legitimate domain and primary technique."""
    how = f" ({match.techniques[0]})" if match.techniques else ""
    return f"imitates {match.legit_domain}{how}"


def match_evidence(match: LookalikeMatch) -> dict[str, object]:
    """The lookalike match as evidence values."""
    return {
        "legit_domain": match.legit_domain,
        "techniques": list(match.techniques),
        "similarity": match.similarity,
        "distance": match.distance,
        "unicode": match.unicode,
        "detail": match.detail,
    }


def counted_auth_results(record: MessageRecord) -> list[AuthResult]:
    """The auth results that speak for the receiving server (see ``auth_failure``).

    These are the results of the topmost Authentication-Results field and of every other
    Authentication-Results field with the same authserv-id, plus the topmost Received-SPF.
    """
    top_id: str | None = None
    have_top = False
    counted: list[AuthResult] = []
    first_spf: AuthResult | None = None
    for result in record.auth_results:
        if result.source == "authentication-results":
            if not have_top:
                top_id, have_top = result.authserv_id, True
            if result.authserv_id == top_id:
                counted.append(result)
        elif result.source == "received-spf" and first_spf is None:
            first_spf = result
    if first_spf is not None:
        counted.append(first_spf)
    return counted


def is_failure(case: CaseContext, result: AuthResult) -> bool:
    """True when the case's policy counts ``result`` as a failure."""
    return result.result.lower() in case.auth_failures.get(result.method.lower(), frozenset())


def auth_failures(case: CaseContext, record: MessageRecord) -> list[AuthResult]:
    """The counted auth results of a message that fail under the case's policy."""
    return [result for result in counted_auth_results(record) if is_failure(case, result)]


#: Methods whose failure means the From domain itself was not authenticated.
FROM_DOMAIN_METHODS = frozenset({"dmarc", "compauth"})


def refuses_from_domain(failures: Iterable[AuthResult]) -> bool:
    """True when among ``failures`` (results that failed) DMARC or compauth did: the
    receiving server did not authenticate the From domain."""
    return any(result.method.lower() in FROM_DOMAIN_METHODS for result in failures)


def auth_label(result: AuthResult) -> str:
    """``dmarc=fail (acme-corp.com)``."""
    label = f"{result.method}={result.result}"
    return f"{label} ({result.domain})" if result.domain else label


def auth_evidence(result: AuthResult) -> dict[str, object]:
    """One auth result as evidence values."""
    return {
        "method": result.method,
        "result": result.result,
        "domain": result.domain,
        "source": result.source,
        "authserv_id": result.authserv_id,
        "reason": result.reason,
    }


def ip_indicator(ip: str) -> Indicator:
    """The indicator of an IP address (v4 or v6)."""
    return Indicator("ipv6-addr" if ":" in ip else "ipv4-addr", ip)


def ref_evidence(ref: MessageRef) -> dict[str, object]:
    """A message reference as evidence values."""
    return {
        "doc_id": ref.doc_id,
        "message_id": ref.message_id,
        "subject": ref.subject,
        "timestamp": iso(ref.timestamp),
        "sender": ref.sender,
    }


def ref_order(ref: MessageRef) -> tuple[bool, datetime, str]:
    """Sort key: by time (undated last), then document id."""
    return (ref.timestamp is None, ref.timestamp or datetime.min.replace(tzinfo=UTC), ref.doc_id)


@dataclass(slots=True)
class MessageSet:
    """Messages one finding concerns: up to :data:`MAX_MESSAGE_REFS` references, the true
    count, and the first and last time seen. Adding the same message twice in a row
    counts it once."""

    refs: list[MessageRef] = field(default_factory=list)
    count: int = 0
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    _last_doc_id: str | None = None

    def add(self, ref: MessageRef) -> None:
        """Count ``ref`` and keep it while under the cap."""
        if ref.doc_id == self._last_doc_id:
            return
        self._last_doc_id = ref.doc_id
        self.count += 1
        if len(self.refs) < MAX_MESSAGE_REFS:
            self.refs.append(ref)
        stamp = ref.timestamp
        if stamp is not None:
            if self.first_seen is None or stamp < self.first_seen:
                self.first_seen = stamp
            if self.last_seen is None or stamp > self.last_seen:
                self.last_seen = stamp

    def sorted_refs(self) -> list[MessageRef]:
        """The kept references by time, then document id."""
        return sorted(self.refs, key=ref_order)

    def evidence(self) -> dict[str, object]:
        """Count, first and last seen as evidence values."""
        return {
            "message_count": self.count,
            "messages_listed": len(self.refs),
            "first_seen": iso(self.first_seen),
            "last_seen": iso(self.last_seen),
        }


#: Precedence values that mark mail sent through a list (RFC 3834 section 2 names them
#: as the values automatic responders must not answer; Mailman sets ``list`` or ``bulk``).
LIST_PRECEDENCE: frozenset[str] = frozenset({"list", "bulk"})

_MAILTO = re.compile(r"<\s*mailto:([^>?\s]+)", re.IGNORECASE)
_LIST_ID = re.compile(r"<\s*([^<>\s]+)\s*>")


def is_list_message(record: MessageRecord) -> bool:
    """True when a message came through a mailing list.

    That is a List-Id (RFC 2919) or List-Post (RFC 2369) field, or Precedence ``list`` or
    ``bulk``. These fields are written by whoever sends the message, so they say how the
    message presents itself, not that a list server really sent it.
    """
    headers = record.headers
    if headers.get("list-id") is not None or headers.get("list-post") is not None:
        return True
    return (headers.get("precedence") or "").strip().lower() in LIST_PRECEDENCE


def list_post_addresses(record: MessageRecord) -> set[str]:
    """The lower-cased ``mailto:`` addresses of the List-Post fields (RFC 2369 section 3.4);
    ``List-Post: NO`` gives none."""
    found: set[str] = set()
    for value in record.headers.get_all("list-post"):
        for address in _MAILTO.findall(value):
            found.add(unquote(address).strip().lower())
    return found


def list_ids(record: MessageRecord) -> set[str]:
    """The lower-cased identifiers of the List-Id fields: ``shapelib.lists.maptools.org``
    from ``Shapelib <shapelib.lists.maptools.org>`` (RFC 2919 section 3)."""
    found: set[str] = set()
    for value in record.headers.get_all("list-id"):
        match = _LIST_ID.search(value)
        text = match.group(1) if match else value.strip()
        if text:
            found.add(text.strip(".").lower())
    return found


def is_list_address(record: MessageRecord, address: Address) -> bool:
    """True when ``address`` is the address of the list that ``record`` came through.

    On a list message (:func:`is_list_message`) that is an address named by List-Post, an
    address on the host the List-Id is named under (``shapelib@lists.maptools.org`` for
    ``shapelib.lists.maptools.org``), or, when the message has neither field, an address
    that is also one of its To or Cc recipients: the list the message was posted to.
    """
    if not address.address or not is_list_message(record):
        return False
    posts = list_post_addresses(record)
    if address.address in posts:
        return True
    host = address.domain
    identifiers = list_ids(record)
    if is_hostname(host) and any(
        identifier == host or identifier.endswith("." + host) for identifier in identifiers
    ):
        return True
    if posts or identifiers:
        return False
    return any(address.address == other.address for other in (*record.to, *record.cc))
