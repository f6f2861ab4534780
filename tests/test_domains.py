"""Tests of registrable domains, IDNs, skeletons and the lookalike techniques."""

from __future__ import annotations

import difflib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inbec_export.domains import (
    TECHNIQUES,
    LookalikeDetector,
    LookalikeMatch,
    is_usable_domain,
    registrable,
    skeleton,
    to_ascii,
    to_unicode,
)

LEGIT = ("acme-corp.com", "acme.com", "apple.com", "globex.com", "initech.com")


@pytest.fixture(scope="module")
def detector() -> LookalikeDetector:
    """A detector for a case with a few legitimate domains and one allowlisted partner."""
    return LookalikeDetector(LEGIT, allowlist=("acme-partners.com",))


def found(detector: LookalikeDetector, host: str) -> LookalikeMatch:
    """The match of ``host``, failing the test when there is none."""
    match = detector.match(host)
    assert match is not None, host
    return match


# Registrable domains and IDNs


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("mail.acme.com", "acme.com"),
        ("acme.com", "acme.com"),
        ("mail.acme.co.uk", "acme.co.uk"),
        ("a.b.acme.co.uk", "acme.co.uk"),
        ("www.shop.acme.com.br", "acme.com.br"),
        ("MAIL.Acme.COM.", "acme.com"),
        ("sub.bücher.de", "xn--bcher-kva.de"),
        ("host.acme.internal", "acme.internal"),
    ],
)
def test_registrable(host: str, expected: str) -> None:
    assert registrable(host) == expected


@pytest.mark.parametrize(
    ("unicode", "ascii"),
    [
        ("аpple.com", "xn--pple-43d.com"),
        ("bücher.de", "xn--bcher-kva.de"),
        ("münchen.example.com", "xn--mnchen-3ya.example.com"),
    ],
)
def test_idn_round_trip(unicode: str, ascii: str) -> None:
    assert to_ascii(unicode) == ascii
    assert to_unicode(ascii) == unicode
    assert to_unicode(to_ascii(unicode)) == unicode


def test_idn_case_and_dots() -> None:
    assert to_ascii(" Bücher.DE. ") == "xn--bcher-kva.de"
    assert to_unicode("ACME.COM") == "acme.com"


def test_invalid_punycode_is_kept() -> None:
    assert to_unicode("xn--zz.com") == "xn--zz.com"


# Skeletons (UTS #39)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("acme", "acrne"),
        ("acrne", "acrne"),
        ("аpple", "apple"),
        ("раураl", "paypal"),
        ("0", "O"),
        ("1", "l"),
        ("I", "l"),
        ("l", "l"),
        ("ﬁ", "fi"),
    ],
)
def test_skeleton(text: str, expected: str) -> None:
    assert skeleton(text) == expected


def test_skeleton_confusables_are_equal() -> None:
    assert skeleton("acme-corp") == skeleton("acrne-corp")
    assert skeleton("paypal") == skeleton("раураl")
    assert skeleton("google") != skeleton("g00gle")


# One test per technique


def test_homoglyph(detector: LookalikeDetector) -> None:
    match = found(detector, "acrne-corp.com")
    assert match.domain == "acrne-corp.com"
    assert match.legit_domain == "acme-corp.com"
    assert match.techniques == ("homoglyph", "similarity")
    assert match.technique == "homoglyph"
    assert match.distance == 2
    assert match.similarity == 0.8889
    assert match.unicode is None
    assert match.detail == (
        "acrne-corp.com imitates acme-corp.com: 'rn' stands for 'm' (homoglyph); also similarity"
    )


def test_homoglyph_digits() -> None:
    detector = LookalikeDetector(("google.com",))
    assert found(detector, "g00gle.com").techniques == ("homoglyph",)
    assert found(detector, "goog1e.com").techniques == ("homoglyph", "similarity")
    assert found(detector, "goog1e.com").detail.startswith(
        "goog1e.com imitates google.com: '1' stands for 'l' (homoglyph)"
    )


def test_idn_homoglyph(detector: LookalikeDetector) -> None:
    match = found(detector, "xn--pple-43d.com")
    assert match.domain == "xn--pple-43d.com"
    assert match.legit_domain == "apple.com"
    assert match.techniques == ("idn-homoglyph", "similarity")
    assert match.unicode == "аpple.com"
    assert match.distance == 1
    assert match.detail == (
        "xn--pple-43d.com (аpple.com) imitates apple.com: 'а' (U+0430 CYRILLIC SMALL LETTER A) "
        "stands for 'a' (idn-homoglyph); also similarity"
    )


def test_idn_homoglyph_given_in_unicode(detector: LookalikeDetector) -> None:
    match = found(detector, "аррlе.com")
    assert match.domain == "xn--l-7sbq6ba.com"
    assert match.legit_domain == "apple.com"
    assert match.techniques == ("idn-homoglyph",)


def test_tld_swap(detector: LookalikeDetector) -> None:
    match = found(detector, "acme-corp.net")
    assert match.legit_domain == "acme-corp.com"
    assert match.techniques == ("tld-swap", "similarity")
    assert match.distance == 0
    assert match.detail == (
        "acme-corp.net imitates acme-corp.com: same name under '.net' instead of '.com' "
        "(tld-swap); also similarity"
    )


def test_tld_swap_multi_part_suffix(detector: LookalikeDetector) -> None:
    assert found(detector, "acme.co.uk").technique == "tld-swap"
    assert found(detector, "acme.co.uk").legit_domain == "acme.com"
    assert found(detector, "mail.apple.com.br").domain == "apple.com.br"
    assert found(detector, "mail.apple.com.br").technique == "tld-swap"


def test_homoglyph_and_tld_swap(detector: LookalikeDetector) -> None:
    match = found(detector, "acrne-corp.net")
    assert match.legit_domain == "acme-corp.com"
    assert match.techniques == ("homoglyph", "tld-swap")


def test_hyphenation(detector: LookalikeDetector) -> None:
    assert found(detector, "ac-me.com").techniques == ("hyphenation", "similarity")
    assert found(detector, "ac-me.com").legit_domain == "acme.com"
    match = found(detector, "acmecorp.com")
    assert match.legit_domain == "acme-corp.com"
    assert match.techniques == ("hyphenation", "similarity")


def test_combo(detector: LookalikeDetector) -> None:
    match = found(detector, "acme-payments.com")
    assert match.legit_domain == "acme.com"
    assert match.techniques == ("combo",)
    assert match.detail == (
        "acme-payments.com imitates acme.com: the legitimate name plus 'payments' (combo)"
    )
    assert found(detector, "acmeinvoices.com").techniques == ("combo",)
    assert found(detector, "acmeinvoices.com").legit_domain == "acme.com"
    assert found(detector, "payroll-initech.co.uk").legit_domain == "initech.com"
    assert found(detector, "acmecorp-payments.com").legit_domain == "acme-corp.com"


def test_combo_through_homoglyphs(detector: LookalikeDetector) -> None:
    match = found(detector, "acrne-payments.com")
    assert match.technique == "combo"
    assert match.legit_domain == "acme.com"
    assert "plus 'payments' once homoglyphs are folded" in match.detail


def test_combo_needs_a_long_enough_label() -> None:
    detector = LookalikeDetector(("abc.com",))
    assert detector.match("abc-payments.com") is None


def test_subdomain(detector: LookalikeDetector) -> None:
    match = found(detector, "acme.com.evil.net")
    assert match.domain == "evil.net"
    assert match.legit_domain == "acme.com"
    assert match.techniques == ("subdomain",)
    assert match.distance is None
    assert match.similarity == 0.25
    assert match.detail == (
        "acme.com.evil.net imitates acme.com: the legitimate name sits in the subdomain part "
        "of evil.net (subdomain)"
    )


def test_subdomain_hyphenated(detector: LookalikeDetector) -> None:
    match = found(detector, "login-acme-com.evil.net")
    assert (match.domain, match.legit_domain, match.technique) == (
        "evil.net",
        "acme.com",
        "subdomain",
    )
    assert found(detector, "acme-corp.com.secure-mail.co.uk").domain == "secure-mail.co.uk"
    assert found(detector, "acme-corp.com.secure-mail.co.uk").legit_domain == "acme-corp.com"


def test_label_alone_in_subdomain_is_not_flagged(detector: LookalikeDetector) -> None:
    assert detector.match("acme.slack.com") is None


@pytest.mark.parametrize(
    ("host", "technique", "legit_domain", "why"),
    [
        ("acmme.com", "repetition", "acme.com", "'m' repeated"),
        ("amce.com", "transposition", "acme.com", "'cm' swapped to 'mc'"),
        ("acm.com", "omission", "acme.com", "'e' left out"),
        ("acmes.com", "plural", "acme.com", "'s' added at the end"),
        ("acmex.com", "addition", "acme.com", "'x' added at the end"),
        ("xacme.com", "addition", "acme.com", "'x' added at the start"),
        ("acxme.com", "insertion", "acme.com", "'x' inserted"),
        ("acma.com", "vowel-swap", "acme.com", "'e' replaced by 'a'"),
        ("acle.com", "bitsquatting", "acme.com", "'m' replaced by 'l', one bit apart"),
        ("acne.com", "replacement", "acme.com", "'m' replaced by 'n'"),
        ("initehc.com", "transposition", "initech.com", "'ch' swapped to 'hc'"),
        ("acme-crop.com", "transposition", "acme-corp.com", "'or' swapped to 'ro'"),
    ],
)
def test_one_edit(
    detector: LookalikeDetector, host: str, technique: str, legit_domain: str, why: str
) -> None:
    match = found(detector, host)
    assert match.legit_domain == legit_domain
    assert match.techniques == (technique, "similarity")
    assert match.distance == 1
    assert match.detail == f"{host} imitates {legit_domain}: {why} ({technique}); also similarity"


def test_one_edit_once_hyphens_are_dropped() -> None:
    detector = LookalikeDetector(("ac-me-corp.com",))
    match = found(detector, "acmecrop.com")
    assert match.technique == "transposition"
    assert "'or' swapped to 'ro' once hyphens are dropped" in match.detail


def test_one_edit_in_other_tld(detector: LookalikeDetector) -> None:
    match = found(detector, "amce.net")
    assert (match.legit_domain, match.technique) == ("acme.com", "transposition")


def test_one_edit_needs_a_long_enough_label() -> None:
    detector = LookalikeDetector(("ibm.com",))
    assert detector.match("ibn.com") is None


def test_edit_distance_on_long_labels() -> None:
    detector = LookalikeDetector(("globexcorp.com",))
    match = found(detector, "glbexcorpp.com")
    assert match.techniques == ("edit-distance", "similarity")
    assert match.distance == 2
    assert LookalikeDetector(("acme.com",)).match("axmx.com") is None


def test_similarity() -> None:
    detector = LookalikeDetector(("contoso.com",))
    match = found(detector, "contsoo-x.com")
    assert match.techniques == ("similarity",)
    assert match.similarity == 0.8333
    assert match.detail == "contsoo-x.com imitates contoso.com: similarity 0.83 (similarity)"


def test_techniques_are_ordered(detector: LookalikeDetector) -> None:
    for host in ("acrne-corp.net", "acmecrop.com", "acme-corp.net", "acmme.com"):
        ranks = [TECHNIQUES.index(name) for name in found(detector, host).techniques]
        assert ranks == sorted(ranks)


# Choosing among legitimate domains


def test_most_specific_legit_domain_wins(detector: LookalikeDetector) -> None:
    # A combo of acme.com, but a transposition of acme-corp.com once hyphens are dropped.
    match = found(detector, "acmecrop.com")
    assert match.legit_domain == "acme-corp.com"
    assert match.techniques == ("transposition", "edit-distance", "similarity")


def test_tie_is_broken_deterministically() -> None:
    detector = LookalikeDetector(("acme.net", "acme.com"))
    match = found(detector, "acme.org")
    assert (match.legit_domain, match.technique) == ("acme.com", "tld-swap")


# What is never flagged


@pytest.mark.parametrize(
    "host",
    [
        "acme-corp.com",
        "mail.acme-corp.com",
        "smtp.eu.acme.com",
        "ACME.COM.",
        "apple.com",
        "acme-partners.com",
        "mail.acme-partners.com",
    ],
)
def test_legit_and_allowlisted_never_flagged(detector: LookalikeDetector, host: str) -> None:
    assert detector.match(host) is None


def test_legit_given_as_subdomain() -> None:
    detector = LookalikeDetector(("mail.acme.com",))
    assert detector.match("www.acme.com") is None
    assert found(detector, "acmme.com").legit_domain == "acme.com"


@pytest.mark.parametrize(
    "host",
    [
        "gmail.com",
        "outlook.com",
        "microsoft.com",
        "hotmail.com",
        "yahoo.com",
        "icloud.com",
        "amazon.com",
        "google.com",
        "linkedin.com",
        "docusign.net",
    ],
)
def test_common_domains_are_not_lookalikes(detector: LookalikeDetector, host: str) -> None:
    assert detector.match(host) is None


def test_google_is_not_globex() -> None:
    # difflib scores the full domains 0.7 only because of '.com': the labels score 0.5.
    assert difflib.SequenceMatcher(None, "google.com", "globex.com").ratio() >= 0.7
    assert LookalikeDetector(("globex.com",)).match("google.com") is None


def test_shared_suffix_does_not_carry_short_labels() -> None:
    assert difflib.SequenceMatcher(None, "ibm.com", "bmw.com").ratio() >= 0.7
    assert LookalikeDetector(("ibm.com",)).match("bmw.com") is None


# Junk and memoisation


@pytest.mark.parametrize(
    "host",
    [
        "",
        " ",
        ".",
        "..",
        "[1.2.3.4]",
        "1.2.3.4",
        "::1",
        "[2001:db8::1]",
        "a..b",
        "acme",
        "-acme.com",
        "acme-.com",
        "acme com",
        "bob@acme.com",
        "x" * 64 + ".com",
        "a." * 200 + "com",
        "acme" * 5000 + ".com",
        "☃☃☃",
        "\x00\x01.com",
        "xn--.com",
        "\ud800.com",
    ],
)
def test_junk_gives_none(detector: LookalikeDetector, host: str) -> None:
    assert detector.match(host) is None


def test_no_legit_domains() -> None:
    assert LookalikeDetector(()).match("acme.com") is None


def test_unusable_legit_domains_are_skipped() -> None:
    detector = LookalikeDetector(("", "[1.2.3.4]", "acme.com"))
    assert found(detector, "acmme.com").legit_domain == "acme.com"


def test_match_is_memoised(detector: LookalikeDetector) -> None:
    first = detector.match("Acmme.com")
    assert first is not None
    assert detector.match("acmme.com.") is first


_HOSTLIKE = st.text(
    alphabet=st.sampled_from("acmeorpl10-._аеοрxn") | st.characters(), min_size=0, max_size=80
)


@settings(max_examples=300, deadline=None)
@given(host=st.text() | _HOSTLIKE)
def test_match_never_raises(host: str) -> None:
    match = LookalikeDetector(LEGIT, allowlist=("acme-partners.com",)).match(host)
    assert match is None or match.technique in TECHNIQUES


@pytest.mark.parametrize(
    ("domain", "usable"),
    [
        ("acme-corp.com", True),
        ("acme.co.uk", True),
        ("mail.acme-corp.com", True),
        ("münchen.de", True),
        ("xn--mnchen-3ya.de", True),
        ("", False),
        ("com", False),
        ("co.uk", False),  # a public suffix itself: every company under it would be legit
        ("xn--zz.com", False),  # punycode that does not decode
        ("not a domain", False),
        ("192.0.2.1", False),
    ],
)
def test_a_usable_case_domain_is_a_name_under_a_public_suffix(domain: str, usable: bool) -> None:
    assert is_usable_domain(domain) is usable


def test_a_legitimate_subdomain_says_it_stands_for_its_whole_domain(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from inbec_export.case import CaseContext

    case = CaseContext(legit_domains=("spamassassin.apache.org", "acme-corp.com"))
    assert case.legit_domains == ("acme-corp.com", "apache.org")
    assert [r.getMessage() for r in caplog.records] == [
        "legitimate domain spamassassin.apache.org is under apache.org: apache.org and every "
        "name under it count as legitimate"
    ]


@pytest.mark.parametrize(
    ("host", "shown", "character"),
    [
        ("acme\u200b-corp.com", "acme\u200b-corp.com", "U+200B ZERO WIDTH SPACE"),
        ("\uff41cme-corp.com", "\uff41cme-corp.com", "U+FF41 FULLWIDTH LATIN SMALL LETTER A"),
        # In a subdomain of the real name: the host as written is the one reported.
        ("mail\u200b.acme-corp.com", "mail\u200b.acme-corp.com", "U+200B ZERO WIDTH SPACE"),
        ("acme\u00ad-corp.com", "acme\u00ad-corp.com", "U+00AD SOFT HYPHEN"),
        # Marks IDNA drops, and characters it refuses: the name still shows as the real one.
        ("acme\ufe0f-corp.com", "acme\ufe0f-corp.com", "U+FE0F VARIATION SELECTOR-16"),
        ("acme\u034f-corp.com", "acme\u034f-corp.com", "U+034F COMBINING GRAPHEME JOINER"),
        ("acme\u200c-corp.com", "acme\u200c-corp.com", "U+200C ZERO WIDTH NON-JOINER"),
        ("acme\u202e-corp.com", "acme\u202e-corp.com", "U+202E RIGHT-TO-LEFT OVERRIDE"),
        ("acme-corp\u3002com", "acme-corp\u3002com", "U+3002 IDEOGRAPHIC FULL STOP"),
        ("acme-corp\uff0ecom", "acme-corp\uff0ecom", "U+FF0E FULLWIDTH FULL STOP"),
    ],
)
def test_a_legitimate_name_written_with_hidden_characters_is_a_lookalike(
    host: str, shown: str, character: str
) -> None:
    from inbec_export.case import CaseContext

    case = CaseContext(legit_domains=("acme-corp.com",))
    match = case.lookalike(host)
    assert match is not None
    assert (match.domain, match.legit_domain, match.techniques) == (
        shown,
        "acme-corp.com",
        ("hidden-characters",),
    )
    assert match.detail.startswith(f"written with {character}: shows as ")
    assert match.detail.endswith("acme-corp.com")
    # The name itself, its subdomains and a real IDN are not.
    for clean in ("acme-corp.com", "mail.acme-corp.com", "ACME-CORP.COM"):
        assert case.lookalike(clean) is None
    assert CaseContext(legit_domains=("münchen.de",)).lookalike("mail.münchen.de") is None


def test_a_sender_on_a_hidden_character_domain_is_a_lookalike_not_legitimate() -> None:
    from inbec_export.case import CaseContext
    from inbec_export.ecs.documents import message_document
    from inbec_export.model import Address, MessageRecord

    record = MessageRecord(
        evidence_path="m.eml", evidence_sha256="0" * 64, evidence_format="eml", item_id="message"
    )
    for domain in ("acme\u200b-corp.com", "acme-corp\uff0ecom"):
        record.from_ = [Address("CEO", f"ceo@{domain}")]
        document = message_document(record, CaseContext(legit_domains=("acme-corp.com",)), [])
        assert document["inbec"]["sender_type"] == "lookalike"
        assert document["inbec"]["lookalike"]["domains"] == [domain]
        assert document["inbec"]["lookalike"]["techniques"] == ["hidden-characters"]
