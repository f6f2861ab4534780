"""The sample case: a small, deterministic invoice-fraud mailbox set to try the tool on.

The story
=========

Acme Corp (``acme-corp.com``, Chicago) buys machine parts from Globex Industries S.p.A.
(``globex-ind.com``, Milan). Both are legitimate domains of the case. Acme runs Exchange
behind a hosted filtering front end (``mx1.acme-corp.com``) that stamps Microsoft-style
``Authentication-Results`` (with ``compauth``) and ``Received-SPF`` on inbound mail.

In March 2024 an attacker phished the mailbox of Marco Bellini, Globex's account manager
for Acme, and read the open invoice thread. On 5 April the attacker registered
``globex-lnd.com`` (``i`` replaced by ``l``: a homoglyph substitution of
``globex-ind.com``) with a cheap hosting provider, and on 8 April replied inside the real
thread, from "Marco Bellini" at the lookalike domain, with a ``Reply-To`` on Gmail: Globex's
bank account was "under audit", please pay invoice INV-2024-0417 (EUR 48,750.00) to new
bank details in Lithuania, urgently. Priya Raman in Acme's accounts payable asked for a
signed letter; the reply went to the Gmail address, which sent a forged letter. The CFO,
Dana Whitfield, approved the change by e-mail without a call-back. Three days later the
same actor, under Dana's display name on an Outlook.com address, asked Priya for an
urgent confidential wire; Priya reported that one to IT. On 16 April the real Marco asked
why INV-2024-0417 was still unpaid, and the fraud came to light.

The evidence
============

``evidence/priya.raman/Inbox/`` and ``evidence/priya.raman/Sent Items/`` hold .eml files
(CRLF line ends, as Windows tools save them) from the AP clerk's mailbox;
``evidence/reported-phish_urgent-wire.eml`` is the message Priya reported; and
``evidence/dana.whitfield.mbox`` is the CFO's mailbox (Inbox and Sent Items, date order,
LF line ends, mboxrd ``>From`` quoting). ``legit-domains.txt`` lists the two companies.

Each message and the signal it is meant to show (``signals`` of :data:`SAMPLE_MESSAGES`;
these are descriptions, not rule ids):

1. ``invoice`` - Marco (real) sends INV-2024-0417 with a PDF: the baseline of the thread,
   Outlook ``Thread-Index``/``Thread-Topic``, SPF, DKIM, DMARC and compauth all pass.
2. ``invoice-ack`` (Sent Items) - Priya confirms the payment run of 12 April: legitimate.
3. ``intrusion`` - the attacker joins the thread from ``globex-lnd.com``: lookalike domain
   (also on the Cc, a lookalike of Globex's credit controller), thread intrusion (first
   message of the conversation from the lookalike, ``In-Reply-To``/``References`` and a
   ``Thread-Index`` that extend the real thread), ``Reply-To`` on freemail,
   ``spf=softfail``, ``dmarc=fail``, ``compauth=fail reason=001``, ``Received-SPF:
   SoftFail``, ``X-Originating-IP: [203.0.113.77]``, bank-change wording (new bank
   details, IBAN, urgent).
4. ``reply-to-attacker`` (Sent Items) - Priya's answer went to the Gmail Reply-To address:
   mail sent to the attacker.
5. ``bank-letter`` - the attacker's Gmail address, display name "Marco Bellini" (a known
   contact's name on a freemail address), sends the forged bank letter (PDF) in the thread.
6. ``statement`` - Globex's ERP statement of account: a Q-encoded ISO-8859-1 subject and
   body, and a ``Return-Path`` domain (the ERP's mailer) that differs from the ``From``
   domain; DKIM is aligned so DMARC passes. A benign mismatch, as real cases have.
7. ``overdue`` - the real Marco, replying to the last message he saw, asks why the
   invoice is unpaid: legitimate, and a second branch of the same conversation.
8. ``cfo-impersonation`` - "Dana Whitfield" on ``dana.whitfield.cfo@outlook.com`` asks
   Priya for an urgent wire: display-name impersonation of staff on freemail, a
   B-encoded UTF-8 subject, ``X-Originating-IP`` the same as message 3's, an IPv6 hop.
9-14. Dana's mbox: an internal thread on Q2 capex (one body line starts with ``From``),
   a mailing-list post that carries ``ARC-Authentication-Results``, a newsletter, and
   Priya's request to approve the bank change with Dana's approval. All legitimate;
   the approval request repeats the new IBAN in internal, authenticated mail.

Every value is fixed (dates, ids, boundaries, file times), so the same call writes the
same bytes every time. IP addresses are from the documentation ranges (RFC 5737,
RFC 3849) and third-party host names use reserved names (RFC 2606); the story's own
domains are fictitious.
"""

from __future__ import annotations

import base64
import email.policy
import hashlib
import logging
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from email.message import MIMEPart
from email.utils import format_datetime
from pathlib import Path

logger = logging.getLogger(__name__)

__all__ = [
    "ACME_DOMAIN",
    "ATTACKER_ADDRESSES",
    "ATTACKER_ORIGINATING_IP",
    "ATTACKER_RELAY_IP",
    "ATTACKER_REPLY_TO",
    "CFO_ADDRESS",
    "CFO_IMPERSONATION_ADDRESS",
    "CFO_NAME",
    "CFO_SUBJECT",
    "CFO_SUBJECT_RAW",
    "FRAUD_IBAN",
    "GLOBEX_DOMAIN",
    "INTRUSION_AUTH_RESULTS",
    "INTRUSION_RECEIVED_SPF",
    "INVOICE_SUBJECT",
    "LEGIT_DOMAINS",
    "LEGIT_IBAN",
    "LIST_ARC_AUTH_RESULTS",
    "LOOKALIKE_ADDRESS",
    "LOOKALIKE_CC_ADDRESS",
    "LOOKALIKE_DOMAIN",
    "LOOKALIKE_OF",
    "MSGID_BANK_LETTER",
    "MSGID_CFO_IMPERSONATION",
    "MSGID_INTRUSION",
    "MSGID_INVOICE",
    "MSGID_INVOICE_ACK",
    "MSGID_LIST_POST",
    "MSGID_OVERDUE",
    "MSGID_REPLY_TO_ATTACKER",
    "MSGID_STATEMENT",
    "SAMPLE_MESSAGES",
    "STATEMENT_RETURN_PATH",
    "STATEMENT_SUBJECT",
    "STATEMENT_SUBJECT_RAW",
    "SampleCase",
    "SampleMessage",
    "generate_sample_case",
]

# --- The cast and the infrastructure ----------------------------------------------------

ACME_DOMAIN = "acme-corp.com"
GLOBEX_DOMAIN = "globex-ind.com"

#: The legitimate domains of the case, as written to ``legit-domains.txt``.
LEGIT_DOMAINS: tuple[str, ...] = (ACME_DOMAIN, GLOBEX_DOMAIN)

#: The attacker's domain: ``globex-ind.com`` with ``i`` swapped for the homoglyph ``l``.
LOOKALIKE_DOMAIN = "globex-lnd.com"

#: The legitimate domain the lookalike imitates.
LOOKALIKE_OF = GLOBEX_DOMAIN

CFO_NAME = "Dana Whitfield"
CFO_ADDRESS = "dana.whitfield@acme-corp.com"
AP_NAME = "Priya Raman"
AP_ADDRESS = "priya.raman@acme-corp.com"
PROCUREMENT_NAME = "Tom Becker"
PROCUREMENT_ADDRESS = "tom.becker@acme-corp.com"
SUPPLIER_NAME = "Marco Bellini"
SUPPLIER_ADDRESS = "marco.bellini@globex-ind.com"
CREDIT_NAME = "Giulia Conti"
CREDIT_ADDRESS = "giulia.conti@globex-ind.com"
STATEMENT_FROM = "credit.control@globex-ind.com"

LOOKALIKE_ADDRESS = "marco.bellini@globex-lnd.com"
LOOKALIKE_CC_ADDRESS = "giulia.conti@globex-lnd.com"
ATTACKER_REPLY_TO = "marco.bellini.globex@gmail.com"
CFO_IMPERSONATION_ADDRESS = "dana.whitfield.cfo@outlook.com"

#: Every address the attacker used, in order of first use.
ATTACKER_ADDRESSES: tuple[str, ...] = (
    LOOKALIKE_ADDRESS,
    LOOKALIKE_CC_ADDRESS,
    ATTACKER_REPLY_TO,
    CFO_IMPERSONATION_ADDRESS,
)

#: The attacker's own machine, in X-Originating-IP of messages 3 and 8.
ATTACKER_ORIGINATING_IP = "203.0.113.77"

#: The hosting provider's relay that sent the lookalike message (not in its SPF record).
ATTACKER_RELAY_HOST = "smtp.budget-hosting.example"
ATTACKER_RELAY_IP = "198.51.100.200"

ACME_MX_HOST = "mx1.acme-corp.com"
ACME_MX_IP = "192.0.2.25"
ACME_MAILBOX_HOST = "MBX01.acme-corp.com"
ACME_MAILBOX_IP = "10.20.1.15"
GLOBEX_MAIL_HOST = "mail.globex-ind.com"
GLOBEX_MAIL_IP = "198.51.100.10"
GMAIL_HOST = "mail-ej1-f52.google.example"
GMAIL_IP = "198.51.100.52"
OUTLOOK_HOST = "outbound-eur.outlook.example"
OUTLOOK_IP = "198.51.100.61"
ERP_HOST = "erp-mailer-03.erp-cloud.example"
ERP_IP = "203.0.113.140"
LIST_HOST = "mx.lists.example.org"
LIST_IP = "192.0.2.80"

LEGIT_IBAN = "IT60 X054 2811 1010 0000 0123 456"
FRAUD_IBAN = "LT12 1000 0111 0100 1000"

# --- Message ids and the exact header values the tests look for -------------------------

MSGID_INVOICE = "6c5d0e1f9a8b4c7d8e9f0a1b2c3d4e5f@EXCH02.globex-ind.com"
MSGID_INVOICE_ACK = "2b7e151628ae4d2a8abf7158809cf4f3@MBX01.acme-corp.com"
MSGID_INTRUSION = "003d01da89b6$5f0c2e40$1d248ac0$@globex-lnd.com"
MSGID_REPLY_TO_ATTACKER = "8f14e45fceea467a9b2c0d3e6f7a8b91@MBX01.acme-corp.com"
MSGID_BANK_LETTER = "CAJ8x7Qb9fZ0Lr4pV2mT-3sKdN8wq5hYc1XoE6uRi7aFgH2Ljw@mail.gmail.com"
MSGID_STATEMENT = "20240404063005.10442.3f9a71c2@mailer.erp-cloud.example"
MSGID_OVERDUE = "a87ff679a2f34c71b0e1d2c3f4a5b6c7@EXCH02.globex-ind.com"
MSGID_CFO_IMPERSONATION = "PAXP193MB18125E0C8A0D6F1B9E2C4A7BD4E52@PAXP193MB1812.outlook.example"
MSGID_CAPEX = "c4ca4238a0b94c2f8e1d5a6b7c8d9e0f@MBX01.acme-corp.com"
MSGID_CAPEX_REPLY = "c81e728d9d4c4f2f9a8b7c6d5e4f3a2b@MBX01.acme-corp.com"
MSGID_LIST_POST = "7d9e2b1a-4c3f-4e8a-9b6d-1f0e2a3b4c5d@northwind.example"
MSGID_NEWSLETTER = "20240406110000.5f2a9c1e7b.dw@news.cfo-briefing.example"
MSGID_APPROVAL = "eccbc87e4b5c4e2fa1d0c9b8a7f6e5d4@MBX01.acme-corp.com"
MSGID_APPROVED = "a3f390d88e4c41f2b7a6c5d4e3f2a1b0@MBX01.acme-corp.com"

INVOICE_SUBJECT = "Invoice INV-2024-0417 - PO 4500012877"

#: Subject of the CFO impersonation, and as written: one B-encoded UTF-8 word (RFC 2047).
CFO_SUBJECT = "Urgent – confidential wire transfer today"
CFO_SUBJECT_RAW = "=?utf-8?B?VXJnZW50IOKAkyBjb25maWRlbnRpYWwgd2lyZSB0cmFuc2ZlciB0b2RheQ==?="

#: Subject of Globex's statement, and as written: one Q-encoded ISO-8859-1 word.
STATEMENT_SUBJECT = "Estratto conto n° 10442: attività di marzo 2024"
STATEMENT_SUBJECT_RAW = "=?iso-8859-1?Q?Estratto_conto_n=B0_10442=3A_attivit=E0_di_marzo_2024?="

STATEMENT_RETURN_PATH = "bounce+10442.ar=globex-ind.com@mailer.erp-cloud.example"

#: Authentication-Results of the intrusion message, unfolded (folded in the file).
INTRUSION_AUTH_RESULTS = (
    f"spf=softfail (sender IP is {ATTACKER_RELAY_IP}) smtp.mailfrom=globex-lnd.com; "
    "dkim=none (message not signed) header.d=none;dmarc=fail action=none "
    "header.from=globex-lnd.com;compauth=fail reason=001"
)

#: Received-SPF of the intrusion message, unfolded.
INTRUSION_RECEIVED_SPF = (
    f"SoftFail ({ACME_MX_HOST}: domain of transitioning globex-lnd.com discourages use of "
    f"{ATTACKER_RELAY_IP} as permitted sender) receiver={ACME_MX_HOST}; "
    f"client-ip={ATTACKER_RELAY_IP}; helo={ATTACKER_RELAY_HOST};"
)

#: ARC-Authentication-Results of the mailing-list post, unfolded.
LIST_ARC_AUTH_RESULTS = (
    f"i=1; {LIST_HOST}; dkim=pass header.i=@northwind.example header.s=sel1 "
    f"header.b=Qm9yZGVy; spf=pass ({LIST_HOST}: domain of karen.osei@northwind.example "
    "designates 203.0.113.40 as permitted sender) smtp.mailfrom=karen.osei@northwind.example; "
    "dmarc=pass (p=QUARANTINE sp=QUARANTINE dis=NONE) header.from=northwind.example"
)

CHICAGO = timezone(timedelta(hours=-5))
MILAN = timezone(timedelta(hours=2))
LAGOS = timezone(timedelta(hours=1))

#: Folder and file names inside ``evidence/``.
INBOX = "priya.raman/Inbox"
SENT = "priya.raman/Sent Items"
MBOX_FILE = "dana.whitfield.mbox"
REPORTED_FILE = "reported-phish_urgent-wire.eml"
LEGIT_FILE = "legit-domains.txt"

_EML_NEWLINE = b"\r\n"
_FILETIME_EPOCH_OFFSET_S = 11_644_473_600  # seconds from 1601-01-01 to 1970-01-01
_FILETIME_TICKS_PER_S = 10_000_000  # FILETIME counts 100-nanosecond intervals


# --- Public records ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SampleMessage:
    """One message of the sample case: where it is written and what it should show.

    ``file`` is relative to the evidence folder (POSIX separators); ``mbox_index`` is the
    message's position in the mbox, None for an .eml file.
    """

    key: str
    message_id: str
    file: str
    mbox_index: int | None
    subject: str
    sender: str
    date: datetime
    signals: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SampleCase:
    """What :func:`generate_sample_case` wrote."""

    out_dir: Path
    evidence_dir: Path
    legit_file: Path
    legit_domains: tuple[str, ...]
    message_count: int
    files: tuple[Path, ...] = field(default=())
    messages: tuple[SampleMessage, ...] = field(default=())


# --- Building blocks ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Mail:
    """A message to write: its raw header fields (in order) and its MIME content."""

    info: SampleMessage
    headers: tuple[tuple[str, str], ...]
    content: MIMEPart
    envelope_from: str


def _utc(year: int, month: int, day: int, hour: int, minute: int, second: int) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def _rfc5322(moment: datetime, zone: timezone = UTC, padded: bool = False) -> str:
    """An RFC 5322 date in ``zone`` (Exchange writes +0000; clients their own zone).

    Exchange and Gmail write the day without a leading zero; Exim and Postfix pad it.
    """
    local = moment.astimezone(zone)
    if padded:
        return format_datetime(local)
    return f"{local:%a}, {local.day} {local:%b %Y %H:%M:%S %z}"


def _digest(label: str, size: int) -> bytes:
    """Deterministic pseudo-random bytes for ids, GUIDs and signatures."""
    out = b""
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{label}\x1f{counter}".encode()).digest()
        counter += 1
    return out[:size]


def _filetime(moment: datetime) -> int:
    return (int(moment.timestamp()) + _FILETIME_EPOCH_OFFSET_S) * _FILETIME_TICKS_PER_S


def _thread_index(root: datetime, replies: tuple[datetime, ...], label: str) -> str:
    """An Outlook Thread-Index ([MS-OXOMSG] 2.2.1.3): a 22-byte header block (the top six
    bytes of the conversation's FILETIME and a GUID), then 5 bytes per reply.
    """
    header_time = _filetime(root) >> 16 << 16
    raw = bytearray(header_time.to_bytes(8, "big")[:6] + _digest(f"guid:{label}", 16))
    for number, moment in enumerate(replies, start=1):
        delta = _filetime(moment) - header_time
        # Code bit 0 keeps delta bits 18-48; code bit 1 (older replies) bits 23-53.
        short = delta < 1 << 49
        block = (delta >> 18) & 0x7FFFFFFF if short else (1 << 31) | ((delta >> 23) & 0x7FFFFFFF)
        noise = _digest(f"child:{label}:{number}", 1)[0] & 0xF0
        raw += block.to_bytes(4, "big") + bytes([noise | (number & 0x0F)])
    return base64.b64encode(bytes(raw)).decode("ascii")


def _fold_b64(text: str, width: int = 68) -> str:
    """Fold a long base64 value onto continuation lines (RFC 5322 section 2.2.3)."""
    return "\n\t".join(text[i : i + width] for i in range(0, len(text), width))


def _dkim(domain: str, selector: str, moment: datetime, headers: str, label: str) -> str:
    """A DKIM-Signature of the right shape; the signature bytes are stand-ins."""
    bh = base64.b64encode(_digest(f"bh:{label}", 32)).decode("ascii")
    sig = base64.b64encode(_digest(f"b:{label}", 128)).decode("ascii")
    return (
        f"v=1; a=rsa-sha256; c=relaxed/relaxed; d={domain}; s={selector};\n"
        f"\tt={int(moment.timestamp())}; h={headers};\n"
        f"\tbh={bh};\n"
        f"\tb={_fold_b64(sig)}"
    )


def _exchange_hops(moment: datetime, from_host: str, from_ip: str) -> list[tuple[str, str]]:
    """The two inbound hops at Acme: the filtering front end, then the mailbox server."""
    tls = "(version=TLS1_2, cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384)"
    return [
        (
            "Received",
            f"from {ACME_MX_HOST} ({ACME_MX_IP}) by {ACME_MAILBOX_HOST}"
            f" ({ACME_MAILBOX_IP}) with Microsoft SMTP Server {tls}"
            f" id 15.2.1544.9; {_rfc5322(moment + timedelta(seconds=2))}",
        ),
        (
            "Received",
            f"from {from_host} ({from_ip}) by {ACME_MX_HOST}"
            f" ({ACME_MX_IP}) with Microsoft SMTP Server {tls}"
            f" id 15.20.7452.28 via Frontend Transport; {_rfc5322(moment + timedelta(seconds=1))}",
        ),
    ]


def _fold(value: str, lead: int, width: int = 78) -> str:
    """Fold a one-line value at spaces (RFC 5322 section 2.2.3); unfolding gives it back.

    ``lead`` is the room the field name takes on the first line.
    """
    lines: list[str] = []
    current = ""
    for word in value.split(" "):
        room = width - (lead if not lines else 0)
        if current and len(current) + 1 + len(word) > room:
            lines.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    lines.append(current)
    return "\n ".join(lines)


def _pass_results(mailfrom: str, dkim_domain: str, from_domain: str, ip: str) -> str:
    """Microsoft-style Authentication-Results (no authserv-id) with everything passing."""
    return (
        f"spf=pass (sender IP is {ip}) smtp.mailfrom={mailfrom}; dkim=pass"
        f" (signature was verified) header.d={dkim_domain};dmarc=pass action=none"
        f" header.from={from_domain};compauth=pass reason=100"
    )


def _received_spf_pass(domain: str, ip: str, helo: str) -> str:
    return (
        f"Pass ({ACME_MX_HOST}: domain of {domain} designates {ip} as"
        f" permitted sender) receiver={ACME_MX_HOST}; client-ip={ip}; helo={helo}; pr=C"
    )


def _outlook_headers(topic: str, index: str) -> list[tuple[str, str]]:
    return [
        ("Thread-Topic", topic),
        ("Thread-Index", index),
    ]


def _client_tail(has_attach: bool, language: str = "en-US") -> list[tuple[str, str]]:
    """The fields Outlook writes after the thread fields."""
    return [
        ("Accept-Language", f"{language}, en-US"),
        ("Content-Language", language),
        ("X-MS-Has-Attach", "yes" if has_attach else ""),
        ("X-MS-TNEF-Correlator", ""),
    ]


def _text(body: str, charset: str = "utf-8") -> MIMEPart:
    """A single text/plain part; 7bit when ASCII, quoted-printable otherwise."""
    part = MIMEPart()
    cte = "7bit" if body.isascii() else "quoted-printable"
    part.set_content(body, charset=charset if not body.isascii() else "us-ascii", cte=cte)
    return part


def _alternative(body: str, boundary: str) -> MIMEPart:
    """text/plain and text/html, as Outlook sends them."""
    message = _text(body)
    paragraphs = "".join(
        f"<p>{line.replace('&', '&amp;').replace('<', '&lt;')}</p>\n" if line else "<p>&nbsp;</p>\n"
        for line in body.splitlines()
    )
    html = f"<html>\n<body>\n{paragraphs}</body>\n</html>\n"
    message.add_alternative(html, subtype="html", cte="7bit" if html.isascii() else "base64")
    message.set_boundary(boundary)
    return message


def _fake_pdf(title: str) -> bytes:
    """A small, well-formed one-page PDF whose page says ``title``."""
    stream = f"BT /F1 14 Tf 72 720 Td ({title}) Tj ET".encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    )
    return bytes(out)


def _with_pdf(body: str, name: str, title: str, boundary: str) -> MIMEPart:
    message = _text(body)
    message.add_attachment(_fake_pdf(title), maintype="application", subtype="pdf", filename=name)
    message.set_boundary(boundary)
    return message


# --- The messages ------------------------------------------------------------------------

T_INVOICE = _utc(2024, 4, 2, 7, 14, 22)
T_INVOICE_ACK = _utc(2024, 4, 3, 14, 41, 9)
T_STATEMENT = _utc(2024, 4, 4, 6, 30, 5)
T_CAPEX = _utc(2024, 4, 4, 19, 20, 44)
T_CAPEX_REPLY = _utc(2024, 4, 5, 13, 5, 12)
T_LIST_POST = _utc(2024, 4, 5, 15, 2, 37)
T_NEWSLETTER = _utc(2024, 4, 6, 11, 0, 0)
T_INTRUSION = _utc(2024, 4, 8, 13, 37, 46)
T_RELAY = T_INTRUSION - timedelta(seconds=3)
T_REPLY_TO_ATTACKER = _utc(2024, 4, 8, 15, 12, 30)
T_BANK_LETTER = _utc(2024, 4, 8, 17, 48, 3)
T_APPROVAL = _utc(2024, 4, 9, 14, 3, 51)
T_APPROVED = _utc(2024, 4, 9, 14, 30, 18)
T_CFO_IMPERSONATION = _utc(2024, 4, 11, 15, 54, 27)
T_OVERDUE = _utc(2024, 4, 16, 8, 2, 11)

_INVOICE_THREAD = "invoice-thread"
_INDEX_INVOICE = _thread_index(T_INVOICE, (), _INVOICE_THREAD)
_INDEX_ACK = _thread_index(T_INVOICE, (T_INVOICE_ACK,), _INVOICE_THREAD)
_INDEX_INTRUSION = _thread_index(T_INVOICE, (T_INVOICE_ACK, T_INTRUSION), _INVOICE_THREAD)
_INDEX_REPLY = _thread_index(
    T_INVOICE, (T_INVOICE_ACK, T_INTRUSION, T_REPLY_TO_ATTACKER), _INVOICE_THREAD
)
_INDEX_OVERDUE = _thread_index(T_INVOICE, (T_INVOICE_ACK, T_OVERDUE), _INVOICE_THREAD)

_MARCO = f"{SUPPLIER_NAME} <{SUPPLIER_ADDRESS}>"
_PRIYA = f"{AP_NAME} <{AP_ADDRESS}>"
_GIULIA = f"{CREDIT_NAME} <{CREDIT_ADDRESS}>"
_DANA = f"{CFO_NAME} <{CFO_ADDRESS}>"
_TOM = f"{PROCUREMENT_NAME} <{PROCUREMENT_ADDRESS}>"

_MARCO_SIGNATURE = (
    "Best regards,\n"
    "Marco Bellini\n"
    "Key Account Manager - North America\n"
    "Globex Industries S.p.A. | Via dell'Industria 14 | 20121 Milano (MI)\n"
)


def _invoice() -> _Mail:
    body = (
        "Dear Priya,\n\n"
        "Please find attached our invoice INV-2024-0417 for PO 4500012877 (hydraulic\n"
        "actuator assemblies, delivered 27 March 2024).\n\n"
        "Amount due: EUR 48,750.00, payment terms 30 days net.\n"
        f"Bank details as on file: IBAN {LEGIT_IBAN}.\n\n" + _MARCO_SIGNATURE
    )
    headers = [
        ("Return-Path", f"<{SUPPLIER_ADDRESS}>"),
        *_exchange_hops(T_INVOICE, GLOBEX_MAIL_HOST, GLOBEX_MAIL_IP),
        (
            "Received",
            f"from EXCH02.globex-ind.com (10.40.0.12) by {GLOBEX_MAIL_HOST}"
            " (10.40.0.5) with Microsoft SMTP Server (version=TLS1_2,"
            " cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id 15.2.1544.4;"
            f" {_rfc5322(T_INVOICE)}",
        ),
        (
            "DKIM-Signature",
            _dkim(
                GLOBEX_DOMAIN,
                "exch2023",
                T_INVOICE,
                "From:To:CC:Subject:Date:Message-ID",
                "invoice",
            ),
        ),
        ("From", _MARCO),
        ("To", _PRIYA),
        ("CC", _GIULIA),
        ("Subject", INVOICE_SUBJECT),
        *_outlook_headers(INVOICE_SUBJECT, _INDEX_INVOICE),
        ("Date", _rfc5322(T_INVOICE)),
        ("Message-ID", f"<{MSGID_INVOICE}>"),
        *_client_tail(True, "it-IT"),
        (
            "Authentication-Results",
            _pass_results(GLOBEX_DOMAIN, GLOBEX_DOMAIN, GLOBEX_DOMAIN, GLOBEX_MAIL_IP),
        ),
        ("Received-SPF", _received_spf_pass(GLOBEX_DOMAIN, GLOBEX_MAIL_IP, GLOBEX_MAIL_HOST)),
    ]
    content = _with_pdf(
        body,
        "INV-2024-0417.pdf",
        "Globex Industries - Invoice INV-2024-0417",
        "_004_6c5d0e1f9a8b4c7dEXCH02globexindcom_",
    )
    info = SampleMessage(
        "invoice",
        MSGID_INVOICE,
        f"{INBOX}/2024-04-02_0714_Invoice_INV-2024-0417.eml",
        None,
        INVOICE_SUBJECT,
        SUPPLIER_ADDRESS,
        T_INVOICE,
        ("baseline", "auth-pass"),
    )
    return _Mail(info, tuple(headers), content, SUPPLIER_ADDRESS)


def _invoice_ack() -> _Mail:
    subject = f"RE: {INVOICE_SUBJECT}"
    body = (
        "Hi Marco,\n\n"
        "Thank you, received. INV-2024-0417 is approved and scheduled for our payment run\n"
        "on Friday, April 12.\n\n"
        "Kind regards,\nPriya Raman\nAccounts Payable | Acme Corp\n\n"
        "-----Original Message-----\n"
        f"From: {SUPPLIER_NAME} <{SUPPLIER_ADDRESS}>\n"
        "Sent: Tuesday, April 2, 2024 2:14 AM\n"
        f"Subject: {INVOICE_SUBJECT}\n\n"
        "Please find attached our invoice INV-2024-0417 for PO 4500012877.\n"
    )
    headers = [
        ("From", _PRIYA),
        ("To", _MARCO),
        ("CC", _GIULIA),
        ("Subject", subject),
        *_outlook_headers(INVOICE_SUBJECT, _INDEX_ACK),
        ("Date", _rfc5322(T_INVOICE_ACK)),
        ("Message-ID", f"<{MSGID_INVOICE_ACK}>"),
        ("References", f"<{MSGID_INVOICE}>"),
        ("In-Reply-To", f"<{MSGID_INVOICE}>"),
        *_client_tail(False),
    ]
    info = SampleMessage(
        "invoice-ack",
        MSGID_INVOICE_ACK,
        f"{SENT}/2024-04-03_1441_RE_Invoice_INV-2024-0417.eml",
        None,
        subject,
        AP_ADDRESS,
        T_INVOICE_ACK,
        ("baseline",),
    )
    return _Mail(info, tuple(headers), _text(body), AP_ADDRESS)


def _intrusion() -> _Mail:
    subject = f"RE: {INVOICE_SUBJECT}"
    body = (
        "Dear Priya,\n\n"
        "Thank you for the confirmation.\n\n"
        "Please note that due to an ongoing audit our account with our current bank is\n"
        "temporarily on hold, and we cannot receive payments there until further notice.\n"
        "Kindly update our records and process the payment of INV-2024-0417\n"
        "(EUR 48,750.00) to our new bank details below:\n\n"
        "Beneficiary: Globex Industries S.p.A.\n"
        f"IBAN: {FRAUD_IBAN}\n"
        "Bank: UAB electronic money institution, Vilnius\n\n"
        "This is urgent, as the invoice is due and our auditors need it settled this week.\n"
        "Please confirm by e-mail once done; our office phone lines are being changed.\n\n"
        + _MARCO_SIGNATURE
    )
    headers = [
        ("Return-Path", f"<{LOOKALIKE_ADDRESS}>"),
        *_exchange_hops(T_INTRUSION, ATTACKER_RELAY_HOST, ATTACKER_RELAY_IP),
        (
            "Received",
            f"from [{ATTACKER_ORIGINATING_IP}] (helo=DESKTOP-7Q2K9LM)\n"
            f"\tby {ATTACKER_RELAY_HOST} with esmtpsa (TLS1.2) tls\n"
            "\tTLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 (Exim 4.96.2)\n"
            f"\t(envelope-from <{LOOKALIKE_ADDRESS}>) id 1rtnXa-0004Qb-1C\n"
            f"\tfor {AP_ADDRESS}; {_rfc5322(T_RELAY, MILAN, padded=True)}",
        ),
        ("From", f'"{SUPPLIER_NAME}" <{LOOKALIKE_ADDRESS}>'),
        ("To", f'"{AP_NAME}" <{AP_ADDRESS}>'),
        ("Cc", f'"{CREDIT_NAME}" <{LOOKALIKE_CC_ADDRESS}>'),
        ("Reply-To", f'"{SUPPLIER_NAME}" <{ATTACKER_REPLY_TO}>'),
        ("References", f"<{MSGID_INVOICE}> <{MSGID_INVOICE_ACK}>"),
        ("In-Reply-To", f"<{MSGID_INVOICE_ACK}>"),
        ("Subject", subject),
        ("Date", _rfc5322(T_INTRUSION - timedelta(seconds=4), LAGOS)),
        ("Message-ID", f"<{MSGID_INTRUSION}>"),
        ("X-Mailer", "Microsoft Outlook 16.0"),
        ("Thread-Topic", INVOICE_SUBJECT),
        ("Thread-Index", _INDEX_INTRUSION),
        ("Content-Language", "en-gb"),
        ("X-Originating-IP", f"[{ATTACKER_ORIGINATING_IP}]"),
        ("X-AntiAbuse", "Primary Hostname - smtp.budget-hosting.example"),
        ("Authentication-Results", INTRUSION_AUTH_RESULTS),
        ("Received-SPF", INTRUSION_RECEIVED_SPF),
    ]
    content = _alternative(body, "----=_NextPart_000_003E_01DA8998.9A3B5C20")
    info = SampleMessage(
        "intrusion",
        MSGID_INTRUSION,
        f"{INBOX}/2024-04-08_1337_RE_Invoice_INV-2024-0417.eml",
        None,
        subject,
        LOOKALIKE_ADDRESS,
        T_INTRUSION - timedelta(seconds=4),
        (
            "lookalike-domain",
            "thread-intrusion",
            "reply-to-freemail",
            "spf-softfail",
            "dmarc-fail",
            "compauth-fail",
            "originating-ip",
            "bank-change-language",
        ),
    )
    return _Mail(info, tuple(headers), content, LOOKALIKE_ADDRESS)


def _reply_to_attacker() -> _Mail:
    subject = f"RE: {INVOICE_SUBJECT}"
    body = (
        "Hi Marco,\n\n"
        "Thanks for letting us know. Our policy requires a signed letter on Globex\n"
        "letterhead for any change of bank details. Could you send one today so we can\n"
        "keep INV-2024-0417 in Friday's run?\n\n"
        "Kind regards,\nPriya Raman\nAccounts Payable | Acme Corp\n"
    )
    headers = [
        ("From", _PRIYA),
        ("To", f"{SUPPLIER_NAME} <{ATTACKER_REPLY_TO}>"),
        ("CC", f"{CREDIT_NAME} <{LOOKALIKE_CC_ADDRESS}>"),
        ("Subject", subject),
        *_outlook_headers(INVOICE_SUBJECT, _INDEX_REPLY),
        ("Date", _rfc5322(T_REPLY_TO_ATTACKER)),
        ("Message-ID", f"<{MSGID_REPLY_TO_ATTACKER}>"),
        ("References", f"<{MSGID_INVOICE}> <{MSGID_INVOICE_ACK}> <{MSGID_INTRUSION}>"),
        ("In-Reply-To", f"<{MSGID_INTRUSION}>"),
        *_client_tail(False),
    ]
    info = SampleMessage(
        "reply-to-attacker",
        MSGID_REPLY_TO_ATTACKER,
        f"{SENT}/2024-04-08_1512_RE_Invoice_INV-2024-0417.eml",
        None,
        subject,
        AP_ADDRESS,
        T_REPLY_TO_ATTACKER,
        ("sent-to-attacker",),
    )
    return _Mail(info, tuple(headers), _text(body), AP_ADDRESS)


def _bank_letter() -> _Mail:
    subject = f"RE: {INVOICE_SUBJECT}"
    body = (
        "Dear Priya,\n\n"
        "Please find attached the signed letter confirming our new bank details.\n"
        "Kindly proceed with the payment today and send me the remittance advice.\n\n"
        "Best regards,\nMarco Bellini\n\n"
        f"On Mon, Apr 8, 2024 at 4:12 PM Priya Raman <{AP_ADDRESS}> wrote:\n"
        "> Our policy requires a signed letter on Globex letterhead for any change of\n"
        "> bank details.\n"
    )
    headers = [
        *_exchange_hops(T_BANK_LETTER, GMAIL_HOST, GMAIL_IP),
        (
            "Received",
            f"by {GMAIL_HOST} with SMTP id a640c23a62f3a-a51c5a0e0c1so412339166b.3\n"
            f"        for <{AP_ADDRESS}>; {_rfc5322(T_BANK_LETTER, LAGOS)}",
        ),
        (
            "DKIM-Signature",
            _dkim(
                "gmail.com",
                "20230601",
                T_BANK_LETTER,
                "to:subject:message-id:date:from:in-reply-to:references:mime-version",
                "letter",
            ),
        ),
        ("MIME-Version", "1.0"),
        ("References", f"<{MSGID_INTRUSION}> <{MSGID_REPLY_TO_ATTACKER}>"),
        ("In-Reply-To", f"<{MSGID_REPLY_TO_ATTACKER}>"),
        ("From", f"{SUPPLIER_NAME} <{ATTACKER_REPLY_TO}>"),
        ("Date", _rfc5322(T_BANK_LETTER, LAGOS)),
        ("Message-ID", f"<{MSGID_BANK_LETTER}>"),
        ("Subject", subject),
        ("To", f"{AP_NAME} <{AP_ADDRESS}>"),
        ("Return-Path", f"<{ATTACKER_REPLY_TO}>"),
        ("Authentication-Results", _pass_results("gmail.com", "gmail.com", "gmail.com", GMAIL_IP)),
        ("Received-SPF", _received_spf_pass("gmail.com", GMAIL_IP, GMAIL_HOST)),
    ]
    content = _with_pdf(
        body,
        "Globex_bank_change_letter.pdf",
        "Globex Industries - change of bank details",
        "000000000000a1b2c3061595d4e7",
    )
    info = SampleMessage(
        "bank-letter",
        MSGID_BANK_LETTER,
        f"{INBOX}/2024-04-08_1748_RE_Invoice_INV-2024-0417.eml",
        None,
        subject,
        ATTACKER_REPLY_TO,
        T_BANK_LETTER,
        ("freemail-display-name-of-contact", "bank-change-language"),
    )
    return _Mail(info, tuple(headers), content, ATTACKER_REPLY_TO)


def _statement() -> _Mail:
    body = (
        "Gentile cliente,\n\n"
        "in allegato l'estratto conto al 31/03/2024 (n° cliente 10442).\n"
        "Partite aperte: INV-2024-0398 EUR 12.300,00 - scadenza 15/04/2024.\n"
        f"Coordinate bancarie: IBAN {LEGIT_IBAN}.\n\n"
        "Dear customer, please find your statement of account at 31 March 2024.\n"
        "Our bank details are unchanged.\n\n"
        "Globex Industries S.p.A. - Contabilità clienti\n"
        "Questo messaggio è stato generato automaticamente.\n"
    )
    headers = [
        ("Return-Path", f"<{STATEMENT_RETURN_PATH}>"),
        *_exchange_hops(T_STATEMENT, ERP_HOST, ERP_IP),
        (
            "Received",
            f"from localhost (localhost [127.0.0.1]) by {ERP_HOST}"
            f" (Postfix) with ESMTP id 4V9Bq52nLqz1xn for <{AP_ADDRESS}>;"
            f" {_rfc5322(T_STATEMENT, MILAN, padded=True)}",
        ),
        (
            "DKIM-Signature",
            _dkim(
                GLOBEX_DOMAIN, "erp1", T_STATEMENT, "From:To:Subject:Date:Message-ID", "statement"
            ),
        ),
        ("From", f"Globex Industries Credit Control <{STATEMENT_FROM}>"),
        ("To", f"<{AP_ADDRESS}>"),
        ("Subject", STATEMENT_SUBJECT_RAW),
        ("Date", _rfc5322(T_STATEMENT, MILAN)),
        ("Message-ID", f"<{MSGID_STATEMENT}>"),
        ("X-Mailer", "ERP Cloud Notifications 7.4"),
        ("MIME-Version", "1.0"),
        (
            "Authentication-Results",
            _pass_results("mailer.erp-cloud.example", GLOBEX_DOMAIN, GLOBEX_DOMAIN, ERP_IP),
        ),
        ("Received-SPF", _received_spf_pass("mailer.erp-cloud.example", ERP_IP, ERP_HOST)),
    ]
    info = SampleMessage(
        "statement",
        MSGID_STATEMENT,
        f"{INBOX}/2024-04-04_0630_Estratto_conto_10442.eml",
        None,
        STATEMENT_SUBJECT,
        STATEMENT_FROM,
        T_STATEMENT,
        ("q-encoded-subject", "return-path-mismatch"),
    )
    return _Mail(info, tuple(headers), _text(body, "iso-8859-1"), STATEMENT_RETURN_PATH)


def _overdue() -> _Mail:
    subject = f"RE: {INVOICE_SUBJECT}"
    body = (
        "Dear Priya,\n\n"
        "Our credit control reports that INV-2024-0417 (EUR 48,750.00) is still open,\n"
        "although you confirmed the payment run of April 12. Could you please check and\n"
        "send us the remittance advice? Our bank details have not changed.\n\n" + _MARCO_SIGNATURE
    )
    headers = [
        ("Return-Path", f"<{SUPPLIER_ADDRESS}>"),
        *_exchange_hops(T_OVERDUE, GLOBEX_MAIL_HOST, GLOBEX_MAIL_IP),
        (
            "Received",
            f"from EXCH02.globex-ind.com (10.40.0.12) by {GLOBEX_MAIL_HOST}"
            " (10.40.0.5) with Microsoft SMTP Server (version=TLS1_2,"
            " cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id 15.2.1544.4;"
            f" {_rfc5322(T_OVERDUE)}",
        ),
        (
            "DKIM-Signature",
            _dkim(
                GLOBEX_DOMAIN,
                "exch2023",
                T_OVERDUE,
                "From:To:CC:Subject:Date:Message-ID",
                "overdue",
            ),
        ),
        ("From", _MARCO),
        ("To", _PRIYA),
        ("CC", _GIULIA),
        ("Subject", subject),
        *_outlook_headers(INVOICE_SUBJECT, _INDEX_OVERDUE),
        ("Date", _rfc5322(T_OVERDUE)),
        ("Message-ID", f"<{MSGID_OVERDUE}>"),
        ("References", f"<{MSGID_INVOICE}> <{MSGID_INVOICE_ACK}>"),
        ("In-Reply-To", f"<{MSGID_INVOICE_ACK}>"),
        *_client_tail(False, "it-IT"),
        (
            "Authentication-Results",
            _pass_results(GLOBEX_DOMAIN, GLOBEX_DOMAIN, GLOBEX_DOMAIN, GLOBEX_MAIL_IP),
        ),
        ("Received-SPF", _received_spf_pass(GLOBEX_DOMAIN, GLOBEX_MAIL_IP, GLOBEX_MAIL_HOST)),
    ]
    info = SampleMessage(
        "overdue",
        MSGID_OVERDUE,
        f"{INBOX}/2024-04-16_0802_RE_Invoice_INV-2024-0417.eml",
        None,
        subject,
        SUPPLIER_ADDRESS,
        T_OVERDUE,
        ("baseline", "auth-pass"),
    )
    return _Mail(info, tuple(headers), _text(body), SUPPLIER_ADDRESS)


def _cfo_impersonation() -> _Mail:
    body = (
        "Priya,\n\n"
        "Are you at your desk? I need you to process a wire of USD 86,400.00 today for a\n"
        "confidential acquisition we are closing. Please keep this between us until it is\n"
        "announced. I am in back-to-back meetings, so e-mail only; I will send the\n"
        "beneficiary details as soon as you confirm.\n\n"
        "Dana\n\nSent from my iPhone\n"
    )
    headers = [
        *_exchange_hops(T_CFO_IMPERSONATION, OUTLOOK_HOST, OUTLOOK_IP),
        (
            "Received",
            f"from PAXP193MB1812.outlook.example (2001:db8:47::18) by\n"
            f" {OUTLOOK_HOST} (2001:db8:47::3) with Microsoft SMTP Server\n"
            " (version=TLS1_2, cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id\n"
            f" 15.20.7452.28; {_rfc5322(T_CFO_IMPERSONATION - timedelta(seconds=1))}",
        ),
        (
            "DKIM-Signature",
            _dkim(
                "outlook.com",
                "selector1",
                T_CFO_IMPERSONATION,
                "From:Date:Subject:Message-ID:Content-Type:MIME-Version",
                "cfo",
            ),
        ),
        ("From", f'"{CFO_NAME}" <{CFO_IMPERSONATION_ADDRESS}>'),
        ("To", f'"{AP_NAME}" <{AP_ADDRESS}>'),
        ("Subject", CFO_SUBJECT_RAW),
        ("Thread-Topic", CFO_SUBJECT_RAW),
        ("Thread-Index", _thread_index(T_CFO_IMPERSONATION, (), "cfo")),
        ("Date", _rfc5322(T_CFO_IMPERSONATION - timedelta(seconds=2))),
        ("Message-ID", f"<{MSGID_CFO_IMPERSONATION}>"),
        ("Accept-Language", "en-US"),
        ("Content-Language", "en-US"),
        ("X-MS-Has-Attach", ""),
        ("X-Originating-IP", f"[{ATTACKER_ORIGINATING_IP}]"),
        ("Return-Path", f"<{CFO_IMPERSONATION_ADDRESS}>"),
        (
            "Authentication-Results",
            _pass_results("outlook.com", "outlook.com", "outlook.com", OUTLOOK_IP),
        ),
        ("Received-SPF", _received_spf_pass("outlook.com", OUTLOOK_IP, OUTLOOK_HOST)),
    ]
    info = SampleMessage(
        "cfo-impersonation",
        MSGID_CFO_IMPERSONATION,
        REPORTED_FILE,
        None,
        CFO_SUBJECT,
        CFO_IMPERSONATION_ADDRESS,
        T_CFO_IMPERSONATION - timedelta(seconds=2),
        (
            "display-name-impersonation",
            "b-encoded-subject",
            "originating-ip",
            "urgent-wire-language",
        ),
    )
    return _Mail(info, tuple(headers), _text(body), CFO_IMPERSONATION_ADDRESS)


def _internal_hop(moment: datetime) -> tuple[str, str]:
    return (
        "Received",
        f"from {ACME_MAILBOX_HOST} ({ACME_MAILBOX_IP}) by {ACME_MAILBOX_HOST}\n"
        f" ({ACME_MAILBOX_IP}) with Microsoft SMTP Server (version=TLS1_2,\n"
        " cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id 15.2.1544.9 via Mailbox\n"
        f" Transport; {_rfc5322(moment + timedelta(seconds=1))}",
    )


def _internal(
    key: str,
    message_id: str,
    moment: datetime,
    sender: tuple[str, str],
    recipient: str,
    subject: str,
    topic: str,
    index: str,
    body: str,
    reply_to_id: str | None = None,
) -> _Mail:
    """A message between Acme staff, as the mailbox server stores it."""
    name, address = sender
    headers = [
        _internal_hop(moment),
        ("From", f"{name} <{address}>"),
        ("To", recipient),
        ("Subject", subject),
        *_outlook_headers(topic, index),
        ("Date", _rfc5322(moment)),
        ("Message-ID", f"<{message_id}>"),
    ]
    if reply_to_id is not None:
        headers += [("References", f"<{reply_to_id}>"), ("In-Reply-To", f"<{reply_to_id}>")]
    headers += [
        *_client_tail(False),
        ("X-MS-Exchange-Organization-AuthAs", "Internal"),
        ("X-MS-Exchange-Organization-AuthSource", ACME_MAILBOX_HOST),
    ]
    info = SampleMessage(key, message_id, MBOX_FILE, None, subject, address, moment, ("internal",))
    return _Mail(info, tuple(headers), _text(body), address)


def _capex_thread() -> list[_Mail]:
    topic = "Q2 capex review - draft numbers"
    first = _internal(
        "capex",
        MSGID_CAPEX,
        T_CAPEX,
        (PROCUREMENT_NAME, PROCUREMENT_ADDRESS),
        _DANA,
        topic,
        topic,
        _thread_index(T_CAPEX, (), "capex"),
        "Dana,\n\nDraft Q2 capex is attached in the shared folder: USD 1.42m, of which the\n"
        "second CNC line is USD 610k. Can we go through it on Monday?\n\nTom\n",
    )
    second = _internal(
        "capex-reply",
        MSGID_CAPEX_REPLY,
        T_CAPEX_REPLY,
        (CFO_NAME, CFO_ADDRESS),
        _TOM,
        f"RE: {topic}",
        topic,
        _thread_index(T_CAPEX, (T_CAPEX_REPLY,), "capex"),
        "Tom,\n\nMonday 10am works.\n"
        "From what I see the CNC line can slip to Q3 if the Globex lead times hold.\n\n"
        "Dana\n",
        MSGID_CAPEX,
    )
    return [first, second]


def _approval_thread() -> list[_Mail]:
    topic = "Approval needed: bank detail change for Globex Industries (INV-2024-0417)"
    request = _internal(
        "approval-request",
        MSGID_APPROVAL,
        T_APPROVAL,
        (AP_NAME, AP_ADDRESS),
        _DANA,
        topic,
        topic,
        _thread_index(T_APPROVAL, (), "approval"),
        "Hi Dana,\n\n"
        "Globex Industries has sent new bank details for INV-2024-0417 (EUR 48,750.00),\n"
        f"with a signed letter: IBAN {FRAUD_IBAN}. As the amount is over USD 25k, the\n"
        "change needs your approval before Friday's payment run.\n\nThanks,\nPriya\n",
    )
    approved = _internal(
        "approval",
        MSGID_APPROVED,
        T_APPROVED,
        (CFO_NAME, CFO_ADDRESS),
        _PRIYA,
        f"RE: {topic}",
        topic,
        _thread_index(T_APPROVAL, (T_APPROVED,), "approval"),
        "Approved. The letter looks fine; please make sure it goes out on Friday.\n\nDana\n",
        MSGID_APPROVAL,
    )
    return [request, approved]


def _list_post() -> _Mail:
    subject = "[treasury-peers] Q2 FX hedging roundtable - agenda"
    body = (
        "Hello all,\n\n"
        "The Q2 roundtable is on April 25 at 3pm CT. Agenda: EUR/USD hedge ratios for\n"
        "2024H2, bank fee benchmarking, and a short round of lessons learned.\n\n"
        "Karen Osei\nTreasurer, Northwind Traders\n\n"
        "--\nYou received this message because you are subscribed to treasury-peers.\n"
    )
    seal = base64.b64encode(_digest("arc-seal", 128)).decode("ascii")
    ams = base64.b64encode(_digest("arc-ams", 128)).decode("ascii")
    headers = [
        ("Return-Path", "<treasury-peers+bncBDY3XK4@lists.example.org>"),
        *_exchange_hops(T_LIST_POST, LIST_HOST, LIST_IP),
        (
            "ARC-Seal",
            f"i=1; a=rsa-sha256; t={int(T_LIST_POST.timestamp())}; cv=none;\n"
            f"        d=lists.example.org; s=arc-20240401;\n        b={_fold_b64(seal)}",
        ),
        (
            "ARC-Message-Signature",
            "i=1; a=rsa-sha256; c=relaxed/relaxed; d=lists.example.org;"
            " s=arc-20240401;\n        h=list-id:reply-to:subject:date:message-id:from;\n"
            f"        b={_fold_b64(ams)}",
        ),
        ("ARC-Authentication-Results", LIST_ARC_AUTH_RESULTS),
        (
            "DKIM-Signature",
            _dkim(
                "lists.example.org",
                "20240401",
                T_LIST_POST,
                "list-id:reply-to:subject:date:message-id:from",
                "list",
            ),
        ),
        ("From", '"Karen Osei via treasury-peers" <treasury-peers@lists.example.org>'),
        ("To", "treasury-peers@lists.example.org"),
        ("Reply-To", "treasury-peers@lists.example.org"),
        ("Subject", subject),
        ("Date", _rfc5322(T_LIST_POST, CHICAGO)),
        ("Message-ID", f"<{MSGID_LIST_POST}>"),
        ("List-Id", "<treasury-peers.lists.example.org>"),
        ("List-Post", "<mailto:treasury-peers@lists.example.org>"),
        ("Precedence", "list"),
        ("MIME-Version", "1.0"),
        (
            "Authentication-Results",
            _pass_results("lists.example.org", "lists.example.org", "lists.example.org", LIST_IP),
        ),
        ("Received-SPF", _received_spf_pass("lists.example.org", LIST_IP, LIST_HOST)),
    ]
    info = SampleMessage(
        "list-post",
        MSGID_LIST_POST,
        MBOX_FILE,
        None,
        subject,
        "treasury-peers@lists.example.org",
        T_LIST_POST,
        ("arc",),
    )
    return _Mail(info, tuple(headers), _text(body), "treasury-peers+bncBDY3XK4@lists.example.org")


def _newsletter() -> _Mail:
    subject = "CFO Briefing: Q2 outlook on rates, FX and working capital"
    body = (
        "CFO Briefing - weekly edition, April 6, 2024\n\n"
        "1. Rates: markets now price two cuts for 2024.\n"
        "2. FX: the euro holds near 1.08 against the dollar.\n"
        "3. Working capital: days payable outstanding rose for the third quarter.\n\n"
        "You are receiving this because you subscribed at cfo-briefing.example.\n"
        "Unsubscribe: https://news.cfo-briefing.example/u/dw-5f2a9c1e7b\n"
    )
    sender = "newsletter@news.cfo-briefing.example"
    bounce = "bounce-20240406-dw@news.cfo-briefing.example"
    host = "o1.news.cfo-briefing.example"
    headers = [
        ("Return-Path", f"<{bounce}>"),
        *_exchange_hops(T_NEWSLETTER, host, "192.0.2.150"),
        (
            "DKIM-Signature",
            _dkim(
                "news.cfo-briefing.example",
                "s1",
                T_NEWSLETTER,
                "from:to:subject:date:message-id:list-unsubscribe",
                "newsletter",
            ),
        ),
        ("From", f"CFO Briefing <{sender}>"),
        ("To", CFO_ADDRESS),
        ("Subject", subject),
        ("Date", _rfc5322(T_NEWSLETTER)),
        ("Message-ID", f"<{MSGID_NEWSLETTER}>"),
        ("List-Unsubscribe", "<https://news.cfo-briefing.example/u/dw-5f2a9c1e7b>"),
        ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
        ("Precedence", "bulk"),
        ("MIME-Version", "1.0"),
        (
            "Authentication-Results",
            _pass_results(
                "news.cfo-briefing.example",
                "news.cfo-briefing.example",
                "news.cfo-briefing.example",
                "192.0.2.150",
            ),
        ),
        ("Received-SPF", _received_spf_pass("news.cfo-briefing.example", "192.0.2.150", host)),
    ]
    info = SampleMessage(
        "newsletter",
        MSGID_NEWSLETTER,
        MBOX_FILE,
        None,
        subject,
        sender,
        T_NEWSLETTER,
        ("bulk",),
    )
    content = _alternative(body, "==_cfob_5f2a9c1e7b_alt")
    return _Mail(info, tuple(headers), content, bounce)


def _eml_mails() -> list[_Mail]:
    return [
        _invoice(),
        _invoice_ack(),
        _statement(),
        _intrusion(),
        _reply_to_attacker(),
        _bank_letter(),
        _cfo_impersonation(),
        _overdue(),
    ]


def _mbox_mails() -> list[_Mail]:
    """Dana's mailbox in date order, each with its index in the mbox."""
    mails = [*_capex_thread(), _list_post(), _newsletter(), *_approval_thread()]
    mails.sort(key=lambda mail: mail.info.date)
    out = []
    for index, mail in enumerate(mails):
        info = mail.info
        indexed = SampleMessage(
            info.key,
            info.message_id,
            info.file,
            index,
            info.subject,
            info.sender,
            info.date,
            info.signals,
        )
        out.append(_Mail(indexed, mail.headers, mail.content, mail.envelope_from))
    return out


# --- Writing -----------------------------------------------------------------------------


def _render(mail: _Mail) -> bytes:
    """The message as LF-terminated bytes: our raw fields, then the MIME fields and body."""
    policy = email.policy.default.clone(linesep="\n", max_line_length=78)
    mime = mail.content.as_bytes(policy=policy)
    mime_head, _, mime_body = mime.partition(b"\n\n")
    written = {name.lower() for name, _ in mail.headers}
    lines = [f"{name}: {_folded(name, value)}".rstrip(" ") for name, value in mail.headers]
    if "mime-version" not in written:
        lines.append("MIME-Version: 1.0")
    keep = False
    for line in mime_head.decode("ascii").split("\n"):
        if line[:1] not in " \t":
            keep = line.split(":", 1)[0].lower() not in written
        if keep:
            lines.append(line)
    head = "\n".join(lines).encode("ascii")
    return head + b"\n\n" + mime_body


def _folded(name: str, value: str) -> str:
    """``value`` as written: kept when already folded or short, else folded at spaces."""
    if "\n" in value or len(name) + 2 + len(value) <= 78:
        return value
    return _fold(value, len(name) + 2)


def _mbox_entry(mail: _Mail) -> bytes:
    """One mboxrd entry: the ``From `` line, the message with ``From `` lines quoted."""
    when = mail.info.date.astimezone(UTC)
    stamp = f"{when:%a %b} {when.day:2d} {when:%H:%M:%S %Y}"
    out = [f"From {mail.envelope_from} {stamp}\n".encode("ascii")]
    for line in _render(mail).splitlines(keepends=True):
        stripped = line.lstrip(b">")
        out.append(b">" + line if stripped.startswith(b"From ") else line)
    text = b"".join(out)
    if not text.endswith(b"\n"):
        text += b"\n"
    return text + b"\n"


def _write(path: Path, data: bytes, moment: datetime) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    stamp = moment.timestamp()
    os.utime(path, (stamp, stamp))


def _legit_text() -> str:
    lines = [
        "# Legitimate domains of the inbec-export sample case: one domain per line.",
        "# The client:",
        ACME_DOMAIN,
        "# Its supplier:",
        GLOBEX_DOMAIN,
    ]
    return "\n".join(lines) + "\n"


def _all_messages() -> tuple[SampleMessage, ...]:
    infos = [mail.info for mail in _eml_mails()] + [mail.info for mail in _mbox_mails()]
    return tuple(sorted(infos, key=lambda info: info.date))


#: Every message of the sample case in date order, with the signals it should show.
SAMPLE_MESSAGES: tuple[SampleMessage, ...] = _all_messages()


def generate_sample_case(out_dir: Path) -> SampleCase:
    """Write the sample case under ``out_dir`` and describe what was written.

    Writes ``out_dir/evidence/`` (.eml files in subfolders and one mbox) and
    ``out_dir/legit-domains.txt``. Files of the same name are overwritten; nothing else
    in ``out_dir`` is touched or deleted. The bytes written never vary between calls.

    Args:
        out_dir: The folder to write into; created when missing.

    Returns:
        The paths written, the legitimate domains and the messages of the case.

    Raises:
        OSError: When a folder or file cannot be written.
    """
    evidence_dir = out_dir / "evidence"
    files: list[Path] = []

    for mail in _eml_mails():
        path = evidence_dir / mail.info.file
        _write(path, _render(mail).replace(b"\n", _EML_NEWLINE), mail.info.date)
        files.append(path)

    mbox_mails = _mbox_mails()
    mbox_path = evidence_dir / MBOX_FILE
    _write(mbox_path, b"".join(_mbox_entry(m) for m in mbox_mails), mbox_mails[-1].info.date)
    files.append(mbox_path)

    legit_file = out_dir / LEGIT_FILE
    _write(legit_file, _legit_text().encode("ascii"), T_INVOICE)
    logger.info("sample case written to %s: %d messages", out_dir, len(SAMPLE_MESSAGES))

    return SampleCase(
        out_dir=out_dir,
        evidence_dir=evidence_dir,
        legit_file=legit_file,
        legit_domains=LEGIT_DOMAINS,
        message_count=len(SAMPLE_MESSAGES),
        files=tuple(sorted(files)),
        messages=SAMPLE_MESSAGES,
    )


def write_large_mbox(path: Path, count: int) -> int:
    """Write an mbox of ``count`` messages for scale tests, streaming, in flat memory.

    The sample case's 14 messages are written again and again, in rounds; in each round
    every Message-ID (and the In-Reply-To and References that name it) gets the round's
    number, so every message is distinct and the threads stay whole within their round.
    The round's messages are rendered once and copied with their ids changed, so writing
    200,000 messages takes seconds. The bytes depend only on ``count``.

    Args:
        path: the mbox file to write (replaced when it exists).
        count: how many messages to write.

    Returns:
        The number of bytes written.
    """
    mails = sorted(_eml_mails() + _mbox_mails(), key=lambda mail: mail.info.date)
    entries = [_mbox_entry(mail) for mail in mails]
    ids = [mail.info.message_id.encode("ascii") for mail in mails]
    written = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        for number in range(count):
            round_number, place = divmod(number, len(entries))
            entry = entries[place]
            for message_id in ids:
                local, _, domain = message_id.partition(b"@")
                entry = entry.replace(message_id, b"%s.r%d@%s" % (local, round_number, domain))
            handle.write(entry)
            written += len(entry)
    logger.info("wrote %s: %d messages, %d bytes", path, count, written)
    return written
