"""Exact-value tests of header parsing: encoded words, addresses, dates, Received and
authentication results, on hand-written values and on real corpus messages."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime
from pathlib import Path

import pytest

from inbec_export.model import Address, AuthResult, EvidenceFile, Headers, MessageRecord
from inbec_export.readers.base import hash_file
from inbec_export.readers.eml import EmlReader
from inbec_export.readers.headers import (
    decode_subject,
    parse_addresses,
    parse_authentication_results,
    parse_date,
    parse_message_ids,
    parse_originating_ips,
    parse_received,
    parse_received_spf,
)
from inbec_export.readers.rfc822 import decode_thread_index, parse_header_block


def test_q_and_b_subjects_in_several_charsets() -> None:
    assert decode_subject("=?iso-8859-1?Q?Rechnung_f=E4llig?=") == ("Rechnung fällig", None)
    assert decode_subject("=?UTF-8?B?0KHRh9C10YIg4oSWIDQy?=") == ("Счет № 42", None)
    # Adjacent encoded words: the white space between them is not part of the text.
    assert decode_subject("=?utf-8?Q?Invoice_?= =?utf-8?Q?ready?=") == ("Invoice ready", None)
    assert decode_subject("Re: =?windows-1252?Q?Caf=E9?= menu") == ("Re: Café menu", None)


def test_undecodable_encoded_word_keeps_raw_text() -> None:
    subject, error = decode_subject("=?x-nonexistent?B?/w==?= tail")
    assert subject == "=?x-nonexistent?B?/w==?= tail"
    assert error == "unknown charset 'x-nonexistent'"
    subject, error = decode_subject("=?utf-8?B?/w==?=")
    assert subject == "=?utf-8?B?/w==?="
    assert error == "invalid utf-8 bytes"


def test_addresses_with_commas_in_names_and_encoded_names() -> None:
    parsed = parse_addresses(
        ['"Whitfield, Dana" <Dana.Whitfield@Acme-Corp.com>, =?utf-8?Q?J=C3=B6rg?= <j@x.de>']
    )
    assert parsed == [
        Address("Whitfield, Dana", "dana.whitfield@acme-corp.com"),
        Address("Jörg", "j@x.de"),
    ]
    assert parsed[0].domain == "acme-corp.com"
    assert parse_addresses(["undisclosed-recipients:;"]) == []


def test_dates_become_aware_utc() -> None:
    assert parse_date("Tue, 1 Oct 2024 10:00:00 +0200") == datetime(2024, 10, 1, 8, tzinfo=UTC)
    assert parse_date("Tue, 1 Oct 2024 10:00:00 -0000") == datetime(2024, 10, 1, 10, tzinfo=UTC)
    assert parse_date("02-04-2024") == datetime(2024, 4, 2, tzinfo=UTC)
    assert parse_date("not a date") is None
    assert parse_date("") is None


def test_received_gives_hosts_ip_and_time() -> None:
    hop = parse_received(
        "from mail.evil.example (mail.evil.example [203.0.113.5])\r\n"
        "\tby mx.acme-corp.com (Postfix) with ESMTPS id 4F2;\r\n"
        "\tTue, 1 Oct 2024 10:00:00 +0200"
    )
    assert hop.from_host == "mail.evil.example"
    assert hop.by_host == "mx.acme-corp.com"
    assert hop.ip == "203.0.113.5"
    assert hop.protocol == "ESMTPS"
    assert hop.timestamp == datetime(2024, 10, 1, 8, tzinfo=UTC)
    exchange = parse_received(
        "from SA0PR02MB7369.namprd02.prod.outlook.com (2603:10b6:806:e4::9) by "
        "CH2PR11CA0005.outlook.com with HTTPS; Wed, 13 Nov 2024 02:20:19 +0000"
    )
    assert exchange.ip == "2603:10b6:806:e4::9"


def test_authentication_results_methods_domains_and_comments() -> None:
    value = (
        "mx.google.com;\r\n dkim=pass header.i=@acme-corp.com header.s=s1;\r\n"
        " spf=softfail (google.com: domain of transitioning bob@acrne-corp.com does not "
        "designate 198.51.100.7 as permitted sender) smtp.mailfrom=bob@acrne-corp.com;\r\n"
        " dmarc=fail (p=NONE sp=NONE dis=NONE) header.from=acrne-corp.com"
    )
    assert parse_authentication_results(value) == [
        AuthResult("dkim", "pass", "acme-corp.com", "authentication-results", "mx.google.com"),
        AuthResult("spf", "softfail", "acrne-corp.com", "authentication-results", "mx.google.com"),
        AuthResult("dmarc", "fail", "acrne-corp.com", "authentication-results", "mx.google.com"),
    ]


def test_microsoft_compauth_and_arc() -> None:
    value = (
        "spf=softfail (sender IP is 203.0.113.77) smtp.mailfrom=globex-lnd.com; "
        "dkim=none (message not signed) header.d=none;dmarc=fail action=none "
        "header.from=globex-lnd.com;compauth=fail reason=001"
    )
    results = parse_authentication_results(value)
    assert [(r.method, r.result, r.domain, r.reason) for r in results] == [
        ("spf", "softfail", "globex-lnd.com", None),
        ("dkim", "none", None, None),
        ("dmarc", "fail", "globex-lnd.com", None),
        ("compauth", "fail", None, "001"),
    ]
    arc = parse_authentication_results(
        "i=1; mx.microsoft.com 1; spf=pass smtp.mailfrom=acme-corp.com; dkim=pass "
        "header.d=acme-corp.com",
        "arc-authentication-results",
    )
    assert [(r.method, r.result, r.domain, r.authserv_id, r.source) for r in arc] == [
        ("spf", "pass", "acme-corp.com", "mx.microsoft.com", "arc-authentication-results"),
        ("dkim", "pass", "acme-corp.com", "mx.microsoft.com", "arc-authentication-results"),
    ]


def test_received_spf() -> None:
    spf = parse_received_spf(
        "SoftFail (protection.outlook.com: domain of transitioning globex-lnd.com "
        "discourages use of 203.0.113.77 as permitted sender)"
    )
    assert spf == AuthResult("spf", "softfail", "globex-lnd.com", "received-spf")
    spf = parse_received_spf(
        "pass (mx: domain of a@b.example designates 192.0.2.1 as permitted sender) "
        "client-ip=192.0.2.1; envelope-from=a@b.example; helo=mail.b.example;"
    )
    assert spf == AuthResult("spf", "pass", "b.example", "received-spf")
    assert parse_received_spf("garbage") is None


def test_ids_and_ips() -> None:
    assert parse_message_ids("<a@x>\r\n <b@y> <c@z>") == ["a@x", "b@y", "c@z"]
    assert parse_originating_ips(["[203.0.113.77]", "not-an-ip"]) == ["203.0.113.77"]
    # Thread-Index: the first 22 bytes name the conversation, replies add 5 bytes each.
    root = "AdoKdJ3NnV7m2rP9QyWbYv1Z0x1cAA=="
    reply = "AdoKdJ3NnV7m2rP9QyWbYv1Z0x1cAAABAgME"
    assert decode_thread_index(root) == decode_thread_index(reply)
    assert decode_thread_index(root) == "01da0a749dcd9d5ee6dab3fd43259b62fd59d31d5c00"


def test_header_block_keeps_repeats_and_skips_junk() -> None:
    headers, warnings = parse_header_block(
        "Received: one\r\nReceived: two\r\n\tfolded\r\nnot a header line\r\nSubject: x\r\n"
    )
    assert headers.get_all("RECEIVED") == ["one", "two\n\tfolded"]
    assert headers.get("subject") == "x"
    assert warnings == ["1 malformed header line(s) skipped"]


def test_headers_look_up_by_name_whatever_the_case_also_after_pickling() -> None:
    headers = Headers([("Received", "one"), ("X-Mailer", "m"), ("RECEIVED", "two")])
    copy = pickle.loads(pickle.dumps(headers))
    for looked_up in (headers, copy):
        assert looked_up.get_all("received") == ["one", "two"]
        assert looked_up.get("Received") == "one"
        assert looked_up.get("x-mailer") == "m"
        assert looked_up.get("Subject", "none") == "none"
        assert looked_up.get_all("subject") == []
        assert "RECEIVED" in looked_up and "Subject" not in looked_up
    # What a caller does with a returned list leaves the headers as they were.
    headers.get_all("received").append("three")
    assert headers.get_all("Received") == ["one", "two"]
    assert copy == headers
    assert copy.items() == [("Received", "one"), ("X-Mailer", "m"), ("RECEIVED", "two")]


def _read_eml(path: Path) -> MessageRecord:
    size, sha256 = hash_file(path)
    event = next(EmlReader().read(EvidenceFile(str(path), "eml", size, sha256)))
    assert isinstance(event, MessageRecord)
    return event


def test_corpus_utf8_q_subject_split_over_words(corpus_dir: Path) -> None:
    record = _read_eml(corpus_dir / "eml" / "phishing_pot_sample-4363.eml")
    assert record.subject == (
        "📦 Aviso Urgente: Documentos Necessários para Liberação - Envio Postal 🚚"
    )
    assert record.originating_ips == ["103.125.219.6"]
    assert [(r.method, r.result, r.domain, r.source) for r in record.auth_results] == [
        ("spf", "fail", "calungas.com", "authentication-results"),
        ("dkim", "fail", "settlersv.com", "authentication-results"),
        ("dmarc", "permerror", "calungas.com", "authentication-results"),
        ("compauth", "fail", None, "authentication-results"),
        ("spf", "fail", "calungas.com", "received-spf"),
    ]


def test_corpus_non_rfc_date_and_attachments(corpus_dir: Path) -> None:
    record = _read_eml(corpus_dir / "eml" / "phishing_pot_sample-2743.eml")
    assert record.date == datetime(2024, 4, 2, tzinfo=UTC)
    assert record.date_raw == "02-04-2024"
    assert [(a.name, a.size, a.mime_type) for a in record.attachments] == [
        ("image001.jpg", 3563, "image/jpeg"),
        ("image002.png", 13274, "image/png"),
        ("image003.png", 7958, "image/png"),
        ("image004.png", 8111, "image/png"),
    ]


def test_corpus_received_spf_only(corpus_dir: Path) -> None:
    record = _read_eml(corpus_dir / "eml" / "spamassassin_nice_spf3-received-spf.eml")
    assert [(r.result, r.domain) for r in record.auth_results] == [
        ("fail", "dostech.ca"),
        ("softfail", "dostech.ca"),
        ("neutral", "dostech.ca"),
    ]
    assert record.date == datetime(2004, 2, 10, 18, 14, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "sublime_bec_ceo_impersonation.eml",
            [Address("Joshua Kamdjou", "joshkamdjou90@gmail.com")],
        ),
        ("spamassassin_nice_orig_ip_hdr.eml", [Address("Roel", "rolek@example.nl")]),
    ],
)
def test_corpus_from(corpus_dir: Path, name: str, expected: list[Address]) -> None:
    assert _read_eml(corpus_dir / "eml" / name).from_ == expected


def test_debris_of_malformed_address_headers_is_no_mailbox() -> None:
    # Found by fuzzing: "@[<" came back as the address "@[<]".
    assert parse_addresses(["@[<"]) == [Address(name="@[<]", address="")]
    assert parse_addresses(['"quoted local"@x.example, z@[203.0.113.7], "a<b" <c@d.e>']) == [
        Address(name="", address='"quoted local"@x.example'),
        Address(name="", address="z@[203.0.113.7]"),
        Address(name="a<b", address="c@d.e"),
    ]


def test_an_ipv6_zone_is_dropped_from_the_address() -> None:
    from inbec_export.readers.headers import normalise_ip

    assert normalise_ip("fe80::1%eth0") == "fe80::1"
    assert normalise_ip("[IPv6:FE80::1%25]") == "fe80::1"
    assert normalise_ip("2001:db8::1") == "2001:db8::1"
    assert parse_originating_ips(["fe80::1%eth0, fe80::1"]) == ["fe80::1"]
