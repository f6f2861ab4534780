"""Normalised records that flow from the readers through detections to the sinks."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Literal, TypeVar

#: Body text kept per message for keyword rules, in characters.
BODY_CAP_CHARS = 64 * 1024

#: Evidence formats the readers know.
EvidenceFormat = Literal["pst", "msg", "eml", "mbox"]

_T = TypeVar("_T")

#: Address header fields, in the order they are reported.
ADDRESS_FIELDS: tuple[str, ...] = ("from", "sender", "reply_to", "return_path", "to", "cc", "bcc")


def pickled_by_fields(cls: type[_T]) -> type[_T]:
    """Pickle instances of the dataclass ``cls`` as a call of its constructor with its
    field values: several times faster than the generated per-field state functions,
    and records cross a process boundary by the thousand."""
    names = tuple(item.name for item in fields(cls))  # type: ignore[arg-type]

    def __reduce__(self: _T) -> tuple[type[_T], tuple[object, ...]]:
        return cls, tuple(getattr(self, name) for name in names)

    cls.__reduce__ = __reduce__  # type: ignore[assignment,method-assign]
    return cls


#: How far a Date header may be after the delivery time (clocks drift, zones get written
#: wrong) before the delivery time is taken as the message's time.
DATE_AFTER_DELIVERY = timedelta(days=2)


@pickled_by_fields
@dataclass(frozen=True, slots=True)
class Address:
    """One mailbox from an address header: display name and address (lower-cased)."""

    name: str
    address: str

    @property
    def domain(self) -> str:
        """The part after the last ``@``, lower-cased, without a trailing dot."""
        _, _, domain = self.address.rpartition("@")
        return domain.strip().rstrip(".").lower()


@pickled_by_fields
@dataclass(frozen=True, slots=True)
class AuthResult:
    """One method result from Authentication-Results, ARC-Authentication-Results or
    Received-SPF (RFC 8601, RFC 8617, RFC 7208 section 9.1).

    ``domain`` is the domain the result speaks for: ``smtp.mailfrom``/``envelope-from`` for
    SPF, ``header.d``/``header.i`` for DKIM, ``header.from`` for DMARC and compauth.
    """

    method: str
    result: str
    domain: str | None = None
    source: str = "authentication-results"
    authserv_id: str | None = None
    reason: str | None = None


@pickled_by_fields
@dataclass(frozen=True, slots=True)
class Hop:
    """One Received header: who handed the message to whom, from which IP, and when."""

    from_host: str | None
    by_host: str | None
    ip: str | None
    timestamp: datetime | None
    protocol: str | None = None


@pickled_by_fields
@dataclass(frozen=True, slots=True)
class Attachment:
    """An attachment's name, size, MIME type and SHA-256 of its content."""

    name: str | None
    size: int | None
    mime_type: str | None
    sha256: str | None
    is_message: bool = False


class Headers:
    """An ordered, case-insensitive multimap of header fields; repeated fields are kept."""

    __slots__ = ("_index", "_items")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] = list(items)
        self._index: dict[str, list[str]] | None = None

    def _values(self, name: str) -> list[str]:
        # The values by lower-cased name, made at the first look-up: a record's headers
        # are looked up a dozen times and more, each a scan of every field otherwise.
        if self._index is None:
            index: dict[str, list[str]] = {}
            for item_name, value in self._items:
                index.setdefault(item_name.lower(), []).append(value)
            self._index = index
        return self._index.get(name.lower(), [])

    def get(self, name: str, default: str | None = None) -> str | None:
        """Return the first value of ``name``, or ``default``."""
        values = self._values(name)
        return values[0] if values else default

    def get_all(self, name: str) -> list[str]:
        """Return every value of ``name`` in the order they appear."""
        return list(self._values(name))

    def items(self) -> list[tuple[str, str]]:
        """Return all ``(name, value)`` pairs in order."""
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and self._items == other._items

    def __repr__(self) -> str:
        return f"Headers({len(self._items)} fields)"

    def __getstate__(self) -> list[tuple[str, str]]:
        return self._items

    def __setstate__(self, state: list[tuple[str, str]]) -> None:
        self._items = state
        self._index = None


@pickled_by_fields
@dataclass(slots=True)
class MessageRecord:
    """One mail item from the evidence, normalised whatever format it came from.

    Times are timezone-aware UTC. ``item_id`` locates the item inside its evidence file
    (PST node identifier path, mbox index, attachment path of an embedded message) so that
    the same evidence always gives the same record identity.
    """

    evidence_path: str
    evidence_sha256: str
    evidence_format: EvidenceFormat
    item_id: str
    folder: str | None = None
    parent_item_id: str | None = None
    message_class: str = "IPM.Note"
    headers: Headers = field(default_factory=Headers)
    from_: list[Address] = field(default_factory=list)
    sender: list[Address] = field(default_factory=list)
    reply_to: list[Address] = field(default_factory=list)
    return_path: list[Address] = field(default_factory=list)
    to: list[Address] = field(default_factory=list)
    cc: list[Address] = field(default_factory=list)
    bcc: list[Address] = field(default_factory=list)
    subject: str | None = None
    subject_raw: str | None = None
    subject_decode_error: str | None = None
    date: datetime | None = None
    date_raw: str | None = None
    delivery_time: datetime | None = None
    submit_time: datetime | None = None
    message_id: str | None = None
    in_reply_to: str | None = None
    references: list[str] = field(default_factory=list)
    thread_index: str | None = None
    thread_topic: str | None = None
    conversation_index: str | None = None
    originating_ips: list[str] = field(default_factory=list)
    hops: list[Hop] = field(default_factory=list)
    auth_results: list[AuthResult] = field(default_factory=list)
    x_mailer: str | None = None
    content_type: str | None = None
    attachments: list[Attachment] = field(default_factory=list)
    body: str = ""
    body_truncated: bool = False
    has_transport_headers: bool = True
    warnings: list[str] = field(default_factory=list)

    def addresses(self, field_name: str) -> list[Address]:
        """Return the addresses of one of :data:`ADDRESS_FIELDS`."""
        return list(getattr(self, "from_" if field_name == "from" else field_name))

    def all_addresses(self) -> Iterator[tuple[str, Address]]:
        """Yield ``(field, address)`` for every address in every address field."""
        for field_name in ADDRESS_FIELDS:
            for address in self.addresses(field_name):
                yield field_name, address

    @property
    def timestamp(self) -> datetime | None:
        """The best time for the message: Date header, else delivery, else submit time;
        the delivery time when the Date header is more than :data:`DATE_AFTER_DELIVERY`
        after it (see :meth:`date_after_delivery`)."""
        if self.date_after_delivery():
            return self.delivery_time
        return self.date or self.delivery_time or self.submit_time

    def date_after_delivery(self) -> bool:
        """True when the Date header claims a time more than :data:`DATE_AFTER_DELIVERY`
        after the message was delivered: a sender cannot write after delivery, so the
        Date is forged (an attacker's message kept at the top of a date-sorted folder)
        or its sender's clock was wrong, and the delivery time is the message's time."""
        if self.date is None or self.delivery_time is None:
            return False
        try:
            return self.date - self.delivery_time > DATE_AFTER_DELIVERY
        except TypeError:  # one time without a zone: not comparable
            return False

    @property
    def doc_id(self) -> str:
        """Deterministic document id: the same evidence item always gives the same id."""
        return stable_id("message", self.evidence_sha256, self.item_id)


@pickled_by_fields
@dataclass(frozen=True, slots=True)
class ItemFailure:
    """An item (or a whole file, when ``item`` is None) that could not be read."""

    evidence_path: str
    item: str | None
    reason: str

    def line(self) -> str:
        """One line for the terminal and the log: file, item and reason."""
        where = self.evidence_path if self.item is None else f"{self.evidence_path} [{self.item}]"
        return f"{where}: {self.reason}"


@pickled_by_fields
@dataclass(frozen=True, slots=True)
class NonMailItem:
    """An item that is not mail (contact, appointment, task...), recognised and counted."""

    evidence_path: str
    item: str
    message_class: str


@pickled_by_fields
@dataclass(frozen=True, slots=True)
class EvidenceFile:
    """One evidence file as opened by a reader: path, format, size and SHA-256."""

    path: str
    format: EvidenceFormat
    size: int
    sha256: str


#: What a reader yields while walking one evidence file.
ReadEvent = MessageRecord | ItemFailure | NonMailItem


#: Recipients kept on a message reference (the rest are counted in the document).
MESSAGE_REF_RECIPIENTS = 10


@pickled_by_fields
@dataclass(frozen=True, slots=True)
class MessageRef:
    """The few fields a finding keeps about each message it concerns."""

    doc_id: str
    message_id: str | None
    subject: str | None
    timestamp: datetime | None
    sender: str | None
    recipients: tuple[str, ...] = ()
    source_ip: str | None = None
    evidence_path: str | None = None
    item_id: str | None = None

    @classmethod
    def of(cls, record: MessageRecord) -> MessageRef:
        """Build the reference of ``record``."""
        sender = record.from_[0].address if record.from_ else None
        recipients = [a.address for a in (*record.to, *record.cc) if a.address]
        ip = record.originating_ips[0] if record.originating_ips else None
        return cls(
            record.doc_id,
            record.message_id,
            record.subject,
            record.timestamp,
            sender,
            tuple(recipients[:MESSAGE_REF_RECIPIENTS]),
            ip,
            record.evidence_path,
            record.item_id,
        )


Severity = Literal["low", "medium", "high", "critical"]

#: ECS event.severity and event.risk_score for each severity.
SEVERITY_SCORES: dict[str, tuple[int, float]] = {
    "low": (21, 21.0),
    "medium": (47, 47.0),
    "high": (73, 73.0),
    "critical": (99, 99.0),
}


@pickled_by_fields
@dataclass(slots=True)
class Indicator:
    """A threat indicator a finding points at (ECS ``threat.indicator.type``)."""

    type: Literal["domain-name", "email-addr", "ipv4-addr", "ipv6-addr"]
    value: str


@pickled_by_fields
@dataclass(slots=True)
class Finding:
    """The result of a detection rule: what was found, why, and which messages show it.

    ``key`` identifies the finding within its rule (a domain, an address, a message id) so
    that the same evidence always gives the same finding id.
    """

    rule_id: str
    rule_name: str
    severity: Severity
    reason: str
    key: str
    evidence: dict[str, object] = field(default_factory=dict)
    messages: list[MessageRef] = field(default_factory=list)
    indicators: list[Indicator] = field(default_factory=list)
    first_seen: datetime | None = None
    last_seen: datetime | None = None

    @property
    def doc_id(self) -> str:
        """Deterministic document id from the rule and the finding's key."""
        return stable_id("finding", self.rule_id, self.key)

    @property
    def timestamp(self) -> datetime | None:
        """When the finding happened: ``first_seen``, else its earliest message."""
        if self.first_seen is not None:
            return self.first_seen
        times = [ref.timestamp for ref in self.messages if ref.timestamp is not None]
        return min(times) if times else None


def stable_id(*parts: str) -> str:
    """Return a 40-hex-digit id derived from ``parts`` (SHA-256, truncated)."""
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8", "surrogatepass")).hexdigest()
    return digest[:40]
