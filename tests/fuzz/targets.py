"""Parser entry points that must never raise, each with a strategy of hostile inputs.

Every target takes one generated input and checks the invariants of the parser's result;
an exception out of a target is a bug. The strategies mix arbitrary text with pieces of
the grammar each parser expects (encoded words, angle addresses, RFC 5322 dates,
``method=result`` pairs), so that generated inputs get past the first checks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from hypothesis import strategies as st

from inbec_export.model import MessageRecord
from inbec_export.readers import headers as h
from inbec_export.readers.rfc822 import (
    MAX_EMBED_DEPTH,
    parse_header_block,
    read_message_tree,
)

#: Grammar pieces that steer generated text into the parsers' interesting paths.
PIECES = [
    "=?utf-8?q?",
    "=?iso-8859-1?b?",
    "=?x-unknown?q?",
    "?=",
    "<",
    ">",
    "@",
    '"',
    "\\",
    "(",
    ")",
    ",",
    ";",
    ":",
    "=",
    "\r\n ",
    "\n\t",
    " ",
    "Mon, ",
    "31 Feb 2024 ",
    "25:61:61 ",
    "+9999",
    "-0000",
    "GMT",
    "spf=",
    "dkim=",
    "dmarc=",
    "compauth=",
    "fail",
    "softfail",
    "pass",
    "header.d=",
    "smtp.mailfrom=",
    "i=1",
    "[",
    "]",
    "IPv6:",
    "::1",
    "203.0.113.7",
    "from ",
    "by ",
    "with ",
    "\x00",
    "\u202e",
    "\udcff",
]

hostile_text = st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=12)), max_size=40).map(
    "".join
)


def _check_addresses(value: str) -> None:
    for address in h.parse_addresses([value]):
        assert address.address == address.address.lower()
        assert "<" not in address.address and ">" not in address.address


def _check_subject(value: str) -> None:
    decoded, error = h.decode_subject(value)
    assert isinstance(decoded, str)
    assert error is None or isinstance(error, str)


def _check_date(value: str) -> None:
    parsed = h.parse_date(value)
    if parsed is not None:
        # Aware, in UTC (a naive datetime has no offset: utcoffset() is None).
        assert parsed.utcoffset() == timedelta(0)


def _check_authentication_results(value: str) -> None:
    for source in ("authentication-results", "arc-authentication-results"):
        for result in h.parse_authentication_results(value, source):
            assert result.method == result.method.lower() or not result.method.isascii()
            assert result.source == source
    spf = h.parse_received_spf(value)
    assert spf is None or spf.method == "spf"


def _check_received(value: str) -> None:
    hop = h.parse_received(value)
    if hop.timestamp is not None:
        assert hop.timestamp.utcoffset() == timedelta(0)
    if hop.ip is not None:
        assert h.normalise_ip(hop.ip) == hop.ip


def _check_header_block(value: str) -> None:
    headers, warnings = parse_header_block(value)
    assert all(isinstance(w, str) for w in warnings)
    for name in ("from", "subject", "date", "received"):
        headers.get_all(name)


def _check_message_bytes(value: bytes) -> None:
    record = MessageRecord(
        evidence_path="fuzz.eml", evidence_sha256="0" * 64, evidence_format="eml", item_id="m"
    )
    events = list(read_message_tree(record, value, lambda item, reason: (item, reason)))
    records = [e for e in events if isinstance(e, MessageRecord)]
    # The outer message comes first, as its record or as a failure naming it: never lost.
    first = events[0]
    assert first is record or (isinstance(first, tuple) and first[0] == "m")
    assert all(r.item_id.count("/attachment") <= MAX_EMBED_DEPTH for r in records)


message_bytes = st.one_of(
    st.binary(max_size=2048),
    st.lists(
        st.one_of(
            st.sampled_from(
                [
                    b"From: ",
                    b"To: ",
                    b"Subject: ",
                    b"Date: ",
                    b"Content-Type: multipart/mixed; boundary=b\r\n",
                    b"Content-Type: message/rfc822\r\n",
                    b"Content-Transfer-Encoding: base64\r\n",
                    b"\r\n--b\r\n",
                    b"\r\n--b--\r\n",
                    b"\r\n\r\n",
                    b"=?utf-8?b?",
                    b"?=",
                ]
            ),
            st.binary(max_size=16),
        ),
        max_size=40,
    ).map(b"".join),
)


@dataclass(frozen=True)
class Target:
    """A parser check and the strategy of its inputs."""

    name: str
    check: Callable[[Any], None]
    strategy: st.SearchStrategy[Any]


TARGETS = {
    target.name: target
    for target in (
        Target("addresses", _check_addresses, hostile_text),
        Target("subject", _check_subject, hostile_text),
        Target("date", _check_date, hostile_text),
        Target("authentication-results", _check_authentication_results, hostile_text),
        Target("received", _check_received, hostile_text),
        Target("header-block", _check_header_block, hostile_text),
        Target("message", _check_message_bytes, message_bytes),
    )
}
