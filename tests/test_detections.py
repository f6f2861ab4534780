"""Exact-value tests of the detection rules, on message records built in the test."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inbec_export.case import CaseContext, compile_subject_pattern
from inbec_export.detections import (
    SUBJECT_MATCH_COLUMNS,
    RuleSet,
    rules,
    run_rules,
    subject_match_row,
)
from inbec_export.detections.auth_failure import AuthFailureRule
from inbec_export.detections.base import Rule
from inbec_export.detections.display_name import DisplayNameImpersonationRule, normalise_name
from inbec_export.detections.lookalike_domain import LookalikeDomainRule
from inbec_export.detections.lookalike_message import LookalikeMessageRule
from inbec_export.detections.originating_ip import OriginatingIpRule
from inbec_export.detections.payment_language import (
    _SCANNER,
    PAYMENT_PHRASES,
    PaymentLanguageRule,
    _search_ibans,
    find_ibans,
    iban_checks,
    payment_phrases,
)
from inbec_export.detections.reply_path import (
    FreemailReplyToRule,
    ReplyToMismatchRule,
    ReturnPathMismatchRule,
)
from inbec_export.detections.subject_match import SubjectMatchRule
from inbec_export.detections.suspicious_mailbox import SuspiciousMailboxRule
from inbec_export.detections.thread_intrusion import (
    ThreadIntrusionRule,
    conversation_key,
    normalise_topic,
)
from inbec_export.domains import LookalikeMatch, registrable
from inbec_export.errors import UsageError
from inbec_export.model import (
    Address,
    AuthResult,
    Finding,
    Headers,
    Hop,
    Indicator,
    MessageRecord,
    MessageRef,
)

T0 = datetime(2024, 3, 5, 9, 12, tzinfo=UTC)

HOMOGLYPH = LookalikeMatch(
    domain="acrne-corp.com",
    legit_domain="acme-corp.com",
    techniques=("homoglyph",),
    similarity=0.8889,
    distance=2,
    unicode=None,
    detail="acrne-corp.com imitates acme-corp.com: 'rn' stands for 'm' (homoglyph)",
)
TLD_SWAP = LookalikeMatch(
    domain="acme-corp.co",
    legit_domain="acme-corp.com",
    techniques=("tld-swap",),
    similarity=0.96,
    distance=0,
    unicode=None,
    detail="acme-corp.co imitates acme-corp.com: same name under .co (tld-swap)",
)


class StubCase(CaseContext):
    """A case whose lookalike engine is a fixed table, so tests do not depend on it.

    With ``flag_all`` every domain is a lookalike, to show that the rules themselves never
    report legitimate or allowlisted domains.
    """

    def __init__(
        self,
        table: dict[str, LookalikeMatch] | None = None,
        flag_all: bool = False,
        **settings: object,
    ) -> None:
        settings.setdefault("legit_domains", ("acme-corp.com",))
        settings.setdefault("allowlist", ("partner.com",))
        super().__init__(**settings)  # type: ignore[arg-type]
        self.table = (
            {"acrne-corp.com": HOMOGLYPH, "acme-corp.co": TLD_SWAP} if table is None else table
        )
        self.flag_all = flag_all

    def lookalike(self, domain: str | None) -> LookalikeMatch | None:
        if not domain:
            return None
        key = registrable(domain)
        if self.flag_all:
            return LookalikeMatch(key, "acme-corp.com", ("similarity",), 0.5, 5, None, "")
        return self.table.get(key)


def addr(text: str) -> Address:
    """``"Name <a@b>"`` or ``"a@b"`` as an Address."""
    if "<" in text:
        name, _, rest = text.partition("<")
        return Address(name.strip(), rest.rstrip(">").strip().lower())
    return Address("", text.strip().lower())


def rec(
    item: str,
    sender: str | None = "Jane Doe <jane@acme-corp.com>",
    *,
    to: Sequence[str] = (),
    cc: Sequence[str] = (),
    bcc: Sequence[str] = (),
    reply_to: Sequence[str] = (),
    return_path: Sequence[str] = (),
    minutes: int | None = 0,
    subject: str | None = "Quarterly report",
    message_id: str | None = None,
    in_reply_to: str | None = None,
    references: Sequence[str] = (),
    thread_index: str | None = None,
    thread_topic: str | None = None,
    hops: Sequence[Hop] = (),
    auth: Sequence[AuthResult] = (),
    ips: Sequence[str] = (),
    body: str = "",
    headers: Sequence[tuple[str, str]] = (),
) -> MessageRecord:
    """A message record with only the fields a test cares about."""
    return MessageRecord(
        evidence_path="case.mbox",
        evidence_sha256="ab" * 32,
        evidence_format="mbox",
        item_id=item,
        headers=Headers(headers),
        from_=[addr(sender)] if sender else [],
        to=[addr(a) for a in to],
        cc=[addr(a) for a in cc],
        bcc=[addr(a) for a in bcc],
        reply_to=[addr(a) for a in reply_to],
        return_path=[addr(a) for a in return_path],
        subject=subject,
        date=None if minutes is None else T0 + timedelta(minutes=minutes),
        message_id=message_id if message_id is not None else f"{item}@mail.example",
        in_reply_to=in_reply_to,
        references=list(references),
        thread_index=thread_index,
        thread_topic=thread_topic,
        hops=list(hops),
        auth_results=list(auth),
        originating_ips=list(ips),
        body=body,
    )


def run(
    rule: type[Rule], records: Iterable[MessageRecord], case: CaseContext | None = None
) -> list[Finding]:
    """Every finding of one rule over ``records`` (observe, then finish); no rule errors."""
    rule_set = RuleSet(case or StubCase(), [rule])
    findings = [finding for record in records for finding in rule_set.observe(record)]
    findings += rule_set.finish()
    assert rule_set.errors == []
    return findings


def only(findings: list[Finding]) -> Finding:
    assert len(findings) == 1, [f.reason for f in findings]
    return findings[0]


def ref(record: MessageRecord) -> MessageRef:
    return MessageRef.of(record)


# --- registry and runner ---------------------------------------------------------------


def test_importing_the_package_registers_every_rule() -> None:
    assert [rule.id for rule in rules()] == [
        "auth-failure",
        "display-name-impersonation",
        "lookalike-domain",
        "lookalike-message",
        "originating-ip",
        "payment-language",
        "reply-to-mismatch",
        "freemail-reply-to",
        "return-path-mismatch",
        "subject-match",
        "suspicious-mailbox",
        "thread-intrusion",
    ]
    assert all(rule.name and rule.description for rule in rules())


def test_ruleset_streams_per_message_findings_then_finish() -> None:
    case = StubCase()
    rule_set = RuleSet.select(case, only=["lookalike-message", "lookalike-domain"])
    assert rule_set.rule_ids == ["lookalike-domain", "lookalike-message"]
    spoof = rec("1", "billing@acrne-corp.com")
    streamed = rule_set.observe(spoof)
    assert [(f.rule_id, f.key) for f in streamed] == [("lookalike-message", spoof.doc_id)]
    assert rule_set.observe(rec("2")) == []
    assert [(f.rule_id, f.key) for f in rule_set.finish()] == [
        ("lookalike-domain", "acrne-corp.com")
    ]
    assert rule_set.messages_seen == 2
    with pytest.raises(RuntimeError):
        rule_set.finish()
    with pytest.raises(RuntimeError):
        rule_set.observe(spoof)


def test_ruleset_select_rejects_unknown_ids_and_skips() -> None:
    with pytest.raises(UsageError, match="unknown rule id\\(s\\) no-such-rule"):
        RuleSet.select(StubCase(), only=["no-such-rule"])
    skipped = RuleSet.select(StubCase(), skip=["thread-intrusion"])
    assert "thread-intrusion" not in skipped.rule_ids
    assert len(skipped.rule_ids) == len(rules()) - 1


class _Broken(Rule):
    id = "broken-test-rule"
    name = "Broken"

    def observe(self, record: MessageRecord) -> Iterable[Finding]:
        raise ValueError("boom")

    def finish(self) -> Iterable[Finding]:
        raise KeyError("gone")


def test_a_failing_rule_is_logged_and_the_others_go_on(caplog: pytest.LogCaptureFixture) -> None:
    record = rec("1", "billing@acrne-corp.com")
    rule_set = RuleSet(StubCase(), [_Broken, LookalikeMessageRule])
    assert [f.rule_id for f in rule_set.observe(record)] == ["lookalike-message"]
    assert rule_set.finish() == []
    assert rule_set.errors == [
        f"rule broken-test-rule failed on message {record.doc_id} (1): ValueError: boom",
        "rule broken-test-rule failed on finish: KeyError: 'gone'",
    ]
    assert "broken-test-rule failed" in caplog.text


def test_every_finding_is_json_serialisable() -> None:
    records = [
        rec("1", "Jane Doe <jane@acme-corp.com>", to=["bob@vendor.com"], subject="Invoice 4471"),
        rec(
            "2",
            "Jane Doe <jane@acrne-corp.com>",
            to=["bob@vendor.com"],
            reply_to=["jane.doe@gmail.com"],
            return_path=["bounce@mailer.net"],
            subject="RE: Invoice 4471",
            minutes=60,
            ips=["203.0.113.7"],
            auth=[AuthResult("dmarc", "fail", "acrne-corp.com", authserv_id="mx.vendor.com")],
            body="Our bank details changed; new IBAN below. Urgent.",
        ),
    ]
    case = StubCase(subject_pattern=compile_subject_pattern("invoice"))
    findings = list(run_rules(case, records))
    assert {f.rule_id for f in findings} == {r.id for r in rules()} - {"reply-to-mismatch"}
    for finding in findings:
        json.dumps(finding.evidence)
        assert finding.reason and "\n" not in finding.reason


# --- lookalike-domain ------------------------------------------------------------------


def test_lookalike_domain_one_finding_per_domain_with_places_and_counts() -> None:
    first = rec(
        "1",
        "John Smith <billing@acrne-corp.com>",
        to=["jane@acme-corp.com"],
        message_id="abc@mail.acrne-corp.com",
    )
    second = rec("2", to=["billing@acrne-corp.com"], cc=["ap@acrne-corp.com"], minutes=30)
    third = rec(
        "3",
        "x@example.org",
        minutes=60,
        hops=[Hop("mx.acme-corp.co", "mx.acme-corp.com", "198.51.100.1", None)],
    )
    findings = run(LookalikeDomainRule, [first, second, third])
    assert [f.key for f in findings] == ["acme-corp.co", "acrne-corp.com"]
    tld, homoglyph = findings

    assert homoglyph.rule_id == "lookalike-domain"
    assert homoglyph.rule_name == "Lookalike domain"
    assert homoglyph.severity == "critical"
    assert homoglyph.reason == (
        "acrne-corp.com imitates acme-corp.com: 'rn' stands for 'm' (homoglyph); "
        "in from, to, cc, message_id; 2 messages from 2 addresses, first 2024-03-05 09:12 UTC"
    )
    assert homoglyph.evidence == {
        "domain": "acrne-corp.com",
        "legit_domain": "acme-corp.com",
        "techniques": ["homoglyph"],
        "similarity": 0.8889,
        "distance": 2,
        "unicode": None,
        "detail": HOMOGLYPH.detail,
        "places": {"from": 1, "to": 1, "cc": 1, "message_id": 1},
        "hosts": ["acrne-corp.com", "mail.acrne-corp.com"],
        "addresses": ["ap@acrne-corp.com", "billing@acrne-corp.com"],
        "address_count": 2,
        "message_count": 2,
        "messages_listed": 2,
        "first_seen": "2024-03-05T09:12:00+00:00",
        "last_seen": "2024-03-05T09:42:00+00:00",
    }
    assert homoglyph.messages == [ref(first), ref(second)]
    assert homoglyph.indicators == [Indicator("domain-name", "acrne-corp.com")]
    assert (homoglyph.first_seen, homoglyph.last_seen) == (T0, T0 + timedelta(minutes=30))

    assert tld.severity == "high"
    assert tld.reason == (
        "acme-corp.co imitates acme-corp.com: same name under .co (tld-swap); "
        "in received; 1 message, first 2024-03-05 10:12 UTC"
    )
    assert tld.evidence["places"] == {"received": 1}
    assert tld.evidence["hosts"] == ["mx.acme-corp.co"]
    assert tld.messages == [ref(third)]


def test_lookalike_domain_caps_message_refs_but_keeps_the_count(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from inbec_export.detections import _common

    monkeypatch.setattr(_common, "MAX_MESSAGE_REFS", 2)
    records = [rec(str(n), "a@acrne-corp.com", minutes=n) for n in range(5)]
    finding = only(run(LookalikeDomainRule, records))
    assert finding.evidence["message_count"] == 5
    assert finding.evidence["messages_listed"] == 2
    assert finding.messages == [ref(records[0]), ref(records[1])]
    assert finding.last_seen == T0 + timedelta(minutes=4)


def test_legit_subdomains_and_allowlist_are_never_flagged_even_by_a_greedy_engine() -> None:
    case = StubCase(flag_all=True)
    records = [
        rec(
            "1",
            "Jane <jane@mail.acme-corp.com>",
            to=["bob@partner.com", "ap@eu.partner.com"],
            reply_to=["jane@acme-corp.com"],
            return_path=["bounce@bounce.acme-corp.com"],
            message_id="x@smtp.acme-corp.com",
            hops=[Hop("out.partner.com", "mx.acme-corp.com", "10.0.0.1", None)],
        ),
        rec(
            "2",
            "Bob Ray <bob@partner.com>",
            to=["Jane <jane@acme-corp.com>"],
            message_id="y@partner.com",
            minutes=5,
        ),
    ]
    assert list(run_rules(case, records)) == []


def test_received_ip_literals_and_single_labels_are_not_domains() -> None:
    case = StubCase(flag_all=True)
    record = rec(
        "1",
        message_id="x@localhost",
        hops=[Hop("[203.0.113.9]", "localhost", "203.0.113.9", None)],
    )
    assert run(LookalikeDomainRule, [record], case) == []


# --- suspicious-mailbox ----------------------------------------------------------------


def test_suspicious_mailbox_per_address_with_fields_names_and_times() -> None:
    first = rec("1", "John Smith <billing@acrne-corp.com>", reply_to=["billing@acrne-corp.com"])
    second = rec("2", "J. Smith <billing@acrne-corp.com>", minutes=90)
    third = rec("3", to=["Accounts <ap@acrne-corp.com>"], minutes=120)
    findings = run(SuspiciousMailboxRule, [first, second, third])
    assert [f.key for f in findings] == ["ap@acrne-corp.com", "billing@acrne-corp.com"]
    recipient, billing = findings

    assert billing.severity == "high"
    assert billing.reason == (
        "billing@acrne-corp.com on acrne-corp.com, which imitates acme-corp.com (homoglyph); "
        "in from, reply_to of 2 messages, as 'John Smith', 'J. Smith'; "
        "first 2024-03-05 09:12 UTC, last 2024-03-05 10:42 UTC"
    )
    assert billing.evidence["fields"] == {"from": 2, "reply_to": 1}
    assert billing.evidence["display_names"] == ["John Smith", "J. Smith"]
    assert billing.evidence["message_count"] == 2
    assert billing.messages == [ref(first), ref(second)]
    assert billing.indicators == [
        Indicator("email-addr", "billing@acrne-corp.com"),
        Indicator("domain-name", "acrne-corp.com"),
    ]

    assert recipient.severity == "medium"
    assert recipient.evidence["fields"] == {"to": 1}
    assert recipient.reason.startswith("ap@acrne-corp.com on acrne-corp.com, which imitates")


# --- lookalike-message -----------------------------------------------------------------


def test_lookalike_message_names_fields_and_domains() -> None:
    record = rec(
        "1",
        "Jane Doe <jane@acme-corp.com>",
        reply_to=["jane@acrne-corp.com"],
        cc=["ap@acme-corp.co"],
        subject="Updated invoice",
    )
    finding = only(run(LookalikeMessageRule, [record]))
    assert finding.key == record.doc_id
    assert finding.severity == "high"
    assert finding.reason == (
        "Message 'Updated invoice' from jane@acme-corp.com at 2024-03-05 09:12 UTC involves "
        "acme-corp.co (imitates acme-corp.com) in cc; "
        "acrne-corp.com (imitates acme-corp.com) in reply_to"
    )
    assert finding.evidence["places"] == {"reply_to": ["acrne-corp.com"], "cc": ["acme-corp.co"]}
    domains = finding.evidence["domains"]
    assert isinstance(domains, dict)
    assert domains["acrne-corp.com"]["addresses"] == ["jane@acrne-corp.com"]
    assert domains["acrne-corp.com"]["techniques"] == ["homoglyph"]
    assert finding.messages == [ref(record)]
    assert finding.indicators == [
        Indicator("domain-name", "acme-corp.co"),
        Indicator("domain-name", "acrne-corp.com"),
    ]


def test_lookalike_message_is_critical_when_in_from_and_silent_otherwise() -> None:
    findings = run(LookalikeMessageRule, [rec("1", "x@acrne-corp.com"), rec("2")])
    assert [(f.key, f.severity) for f in findings] == [(rec("1").doc_id, "critical")]


# --- auth-failure ----------------------------------------------------------------------


def _ar(
    method: str, result: str, domain: str | None, server: str = "mx.acme-corp.com"
) -> AuthResult:
    return AuthResult(method, result, domain, "authentication-results", server)


def test_auth_failure_counts_the_topmost_server_only() -> None:
    record = rec(
        "1",
        "ceo@acme-corp.com",
        subject="Wire today",
        auth=[
            _ar("spf", "softfail", "acme-corp.com"),
            _ar("dkim", "pass", "acme-corp.com"),
            _ar("dmarc", "fail", "acme-corp.com"),
            _ar("spf", "fail", "relay.example", server="relay.example"),
            AuthResult("dkim", "fail", "x.example", "arc-authentication-results", "arc.example"),
            AuthResult("spf", "softfail", "acme-corp.com", "received-spf"),
            AuthResult("spf", "fail", "older.example", "received-spf"),
        ],
    )
    finding = only(run(AuthFailureRule, [record]))
    assert finding.key == record.doc_id
    assert finding.severity == "high"
    assert finding.reason == (
        "spf=softfail (acme-corp.com), dmarc=fail (acme-corp.com) at mx.acme-corp.com for "
        "'Wire today' from ceo@acme-corp.com at 2024-03-05 09:12 UTC"
    )
    assert finding.evidence["failures"] == [
        {
            "method": "spf",
            "result": "softfail",
            "domain": "acme-corp.com",
            "source": "authentication-results",
            "authserv_id": "mx.acme-corp.com",
            "reason": None,
        },
        {
            "method": "dmarc",
            "result": "fail",
            "domain": "acme-corp.com",
            "source": "authentication-results",
            "authserv_id": "mx.acme-corp.com",
            "reason": None,
        },
        {
            "method": "spf",
            "result": "softfail",
            "domain": "acme-corp.com",
            "source": "received-spf",
            "authserv_id": None,
            "reason": None,
        },
    ]
    others = finding.evidence["other_failures"]
    assert isinstance(others, list)
    assert [(o["method"], o["source"]) for o in others] == [
        ("spf", "authentication-results"),
        ("dkim", "arc-authentication-results"),
        ("spf", "received-spf"),
    ]
    assert finding.evidence["methods"] == ["dmarc", "spf"]
    assert finding.indicators == [Indicator("domain-name", "acme-corp.com")]


def test_auth_failure_lower_headers_alone_raise_nothing() -> None:
    record = rec(
        "1",
        auth=[
            _ar("spf", "pass", "acme-corp.com"),
            _ar("dmarc", "fail", "acme-corp.com", server="forged.example"),
        ],
    )
    assert run(AuthFailureRule, [record]) == []


def test_auth_failure_medium_and_policy_from_the_case() -> None:
    record = rec("1", "a@vendor.com", auth=[_ar("spf", "softfail", "vendor.com")])
    assert only(run(AuthFailureRule, [record])).severity == "medium"
    strict = StubCase(auth_failures={"spf": frozenset({"fail"})})
    assert run(AuthFailureRule, [record], strict) == []
    neutral = rec("2", "a@vendor.com", auth=[_ar("spf", "neutral", "vendor.com")])
    custom = StubCase(auth_failures={"spf": frozenset({"neutral"})})
    assert only(run(AuthFailureRule, [neutral], custom)).evidence["methods"] == ["spf"]


def test_auth_failure_is_high_when_a_legit_domain_fails_dkim() -> None:
    record = rec("1", "a@vendor.com", auth=[_ar("dkim", "fail", "mail.acme-corp.com")])
    assert only(run(AuthFailureRule, [record])).severity == "high"


# --- reply-to / return-path ------------------------------------------------------------


def test_reply_to_mismatch_aggregates_per_domain_pair() -> None:
    first = rec("1", "ceo@acme-corp.com", reply_to=["ceo@acrne-corp.com"])
    second = rec("2", "cfo@mail.acme-corp.com", reply_to=["cfo@acrne-corp.com"], minutes=10)
    same = rec("3", "a@acme-corp.com", reply_to=["b@bounce.acme-corp.com"])
    freemail = rec("4", "a@acme-corp.com", reply_to=["x@gmail.com"])
    trusted = rec("5", "a@acme-corp.com", reply_to=["b@partner.com"])
    finding = only(run(ReplyToMismatchRule, [first, second, same, freemail, trusted]))
    assert finding.rule_id == "reply-to-mismatch"
    assert finding.key == "acme-corp.com>acrne-corp.com"
    assert finding.severity == "high"
    assert finding.reason == (
        "Reply-To on acrne-corp.com (which imitates acme-corp.com (homoglyph)) while From is "
        "on acme-corp.com; 2 messages (ceo@acrne-corp.com, cfo@acrne-corp.com), "
        "first 2024-03-05 09:12 UTC, last 2024-03-05 09:22 UTC"
    )
    assert finding.evidence == {
        "from_domain": "acme-corp.com",
        "reply_to_domain": "acrne-corp.com",
        "from_addresses": ["ceo@acme-corp.com", "cfo@mail.acme-corp.com"],
        "reply_to_addresses": ["ceo@acrne-corp.com", "cfo@acrne-corp.com"],
        "lookalike": {"legit_domain": "acme-corp.com", "techniques": ["homoglyph"]},
        "message_count": 2,
        "messages_listed": 2,
        "first_seen": "2024-03-05T09:12:00+00:00",
        "last_seen": "2024-03-05T09:22:00+00:00",
    }
    assert finding.messages == [ref(first), ref(second)]
    assert finding.indicators == [
        Indicator("domain-name", "acrne-corp.com"),
        Indicator("email-addr", "ceo@acrne-corp.com"),
        Indicator("email-addr", "cfo@acrne-corp.com"),
    ]


def test_reply_to_mismatch_is_medium_between_outside_domains() -> None:
    record = rec("1", "news@vendor.com", reply_to=["help@vendor-support.net"])
    finding = only(run(ReplyToMismatchRule, [record]))
    assert (finding.key, finding.severity) == ("vendor.com>vendor-support.net", "medium")
    assert finding.evidence["lookalike"] is None


LIST_HEADERS = (
    ("List-Id", "Shapelib Development <shapelib.lists.maptools.org>"),
    ("List-Post", "<mailto:shapelib@lists.maptools.org>"),
    ("Precedence", "list"),
)


def test_reply_to_the_mailing_list_itself_is_not_a_mismatch() -> None:
    def posted(item: str, reply_to: str, headers: Sequence[tuple[str, str]]) -> MessageRecord:
        return rec(
            item,
            "ann@vendor.com",
            to=["shapelib@lists.maptools.org"],
            reply_to=[reply_to],
            headers=headers,
        )

    messages = [
        posted("1", "Shapelib <shapelib@lists.maptools.org>", LIST_HEADERS),
        # Any address on the host the List-Id is named under.
        posted("2", "shapelib@lists.maptools.org", LIST_HEADERS[:1]),
        # Mailman 2.0 without List-Id or List-Post: the list is the To address.
        posted("3", "shapelib@lists.maptools.org", [("Precedence", "bulk")]),
    ]
    assert run(ReplyToMismatchRule, messages) == []


def test_reply_to_mismatch_on_a_list_message_still_reports_other_addresses() -> None:
    messages = [
        # A Reply-To that is neither the List-Post address nor under the List-Id.
        rec("1", "ann@vendor.com", reply_to=["ann@other.net"], headers=LIST_HEADERS),
        # Precedence alone: a Reply-To that is not a recipient is not the list.
        rec(
            "2",
            "ann@vendor.com",
            to=["list@lists.example.org"],
            reply_to=["list@other.net"],
            headers=[("Precedence", "bulk")],
        ),
        # No list fields: the To address is just a recipient.
        rec("3", "ann@vendor.com", to=["bob@third.net"], reply_to=["bob@third.net"]),
        # A lookalike list address is reported even so.
        rec(
            "4",
            "ann@vendor.com",
            reply_to=["list@acrne-corp.com"],
            headers=[("List-Post", "<mailto:list@acrne-corp.com>")],
        ),
    ]
    findings = run(ReplyToMismatchRule, messages)
    assert [(f.key, f.severity, f.evidence["message_count"]) for f in findings] == [
        ("vendor.com>acrne-corp.com", "high", 1),
        ("vendor.com>other.net", "medium", 2),
        ("vendor.com>third.net", "medium", 1),
    ]


def test_freemail_reply_to_severity_follows_the_from_domain() -> None:
    business = rec("1", "ceo@acme-corp.com", reply_to=["ceo.acme@gmail.com"])
    freemail = rec("2", "bob@yahoo.com", reply_to=["bob2@gmail.com"], minutes=5)
    own = rec("3", "bob@gmail.com", reply_to=["bob@gmail.com"])
    findings = run(FreemailReplyToRule, [business, freemail, own])
    assert [(f.key, f.severity) for f in findings] == [
        ("acme-corp.com>ceo.acme@gmail.com", "high"),
        ("yahoo.com>bob2@gmail.com", "medium"),
    ]
    assert findings[0].reason == (
        "Reply-To ceo.acme@gmail.com on freemail gmail.com while From is on business domain "
        "acme-corp.com; 1 message (ceo.acme@gmail.com), first 2024-03-05 09:12 UTC, "
        "last 2024-03-05 09:12 UTC"
    )
    assert findings[0].messages == [ref(business)]


def test_return_path_mismatch_is_low_and_uses_registrable_domains() -> None:
    record = rec("1", "a@vendor.com", return_path=["bounce@em.sendgrid.net"])
    same = rec("2", "a@vendor.com", return_path=["bounce@bounce.vendor.com"])
    empty = rec("3", "a@vendor.com", return_path=[""])
    finding = only(run(ReturnPathMismatchRule, [record, same, empty]))
    assert (finding.key, finding.severity) == ("vendor.com>sendgrid.net", "low")
    assert finding.evidence["return_path_addresses"] == ["bounce@em.sendgrid.net"]
    assert finding.reason.startswith("Return-Path on sendgrid.net while From is on vendor.com;")


def test_no_from_no_comparison() -> None:
    record = rec("1", None, reply_to=["x@gmail.com"], return_path=["y@other.net"])
    for rule in (ReplyToMismatchRule, FreemailReplyToRule, ReturnPathMismatchRule):
        assert run(rule, [record]) == []


# --- display-name-impersonation --------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ('"Smith, John"', "john smith"),
        ("  JOHN   Smith ", "john smith"),
        ("John Smith (CEO)", "john smith"),
        ("John A. Smith", "john a smith"),
        ("[EXT] John Smith", "john smith"),
        ("John", None),
        ("john.smith@acme-corp.com", None),
        ("'jsmith'", None),
    ],
)
def test_normalise_name(name: str, expected: str | None) -> None:
    assert normalise_name(name) == expected


@pytest.mark.parametrize("reverse", [False, True])
def test_display_name_impersonation_independent_of_order(reverse: bool) -> None:
    legit = rec("1", "John Smith <john.smith@acme-corp.com>", to=["ap@vendor.com"])
    fake = rec("2", "Smith, John <ceo.office@gmail.com>", to=["ap@vendor.com"], minutes=60)
    fake_cc = rec("3", "x@vendor.com", cc=["JOHN SMITH <ceo.office@gmail.com>"], minutes=61)
    records = [legit, fake, fake_cc]
    finding = only(run(DisplayNameImpersonationRule, records[::-1] if reverse else records))
    assert finding.key == "john smith|ceo.office@gmail.com"
    assert finding.severity == "high"
    assert finding.reason == (
        "'JOHN SMITH' (the name of john.smith@acme-corp.com) with outside address "
        "ceo.office@gmail.com; in from, cc of 2 messages, first 2024-03-05 10:12 UTC"
    )
    assert finding.evidence == {
        "normalised_name": "john smith",
        "display_names": ["JOHN SMITH", "Smith, John"],
        "legit_addresses": ["john.smith@acme-corp.com"],
        "legit_display_names": ["John Smith"],
        "address": "ceo.office@gmail.com",
        "domain": "gmail.com",
        "fields": {"from": 1, "cc": 1},
        "lookalike": None,
        "message_count": 2,
        "messages_listed": 2,
        "first_seen": "2024-03-05T10:12:00+00:00",
        "last_seen": "2024-03-05T10:13:00+00:00",
    }
    assert finding.messages == [ref(fake), ref(fake_cc)]
    assert finding.indicators == [
        Indicator("email-addr", "ceo.office@gmail.com"),
        Indicator("domain-name", "gmail.com"),
    ]


def test_display_name_impersonation_severity_and_exclusions() -> None:
    records = [
        rec("1", "John Smith <john.smith@acme-corp.com>", to=["Mary Jones <mary@acme-corp.com>"]),
        rec("2", "John Smith <john.smith@acrne-corp.com>"),
        rec("3", "x@acme-corp.com", to=["Mary Jones <mary.jones@outside.net>"]),
        rec("4", "John Smith <john@partner.com>"),
        rec("5", "Bob Stone <bob@outside.net>"),
        rec("6", "John <john@outside.net>", to=["John <j@acme-corp.com>"]),
    ]
    findings = run(DisplayNameImpersonationRule, records)
    assert [(f.key, f.severity) for f in findings] == [
        ("john smith|john.smith@acrne-corp.com", "critical"),
        ("mary jones|mary.jones@outside.net", "medium"),
    ]
    assert findings[0].evidence["lookalike"] == {
        "legit_domain": "acme-corp.com",
        "techniques": ["homoglyph"],
    }


# --- originating-ip --------------------------------------------------------------------


def test_originating_ip_counts_and_raises_on_lookalike_or_auth() -> None:
    plain = rec("1", "a@vendor.com", ips=["198.51.100.7"])
    spoof = rec("2", "b@acrne-corp.com", ips=["203.0.113.7", "2001:db8::1"], minutes=5)
    failed = rec(
        "3",
        "c@vendor.com",
        ips=["203.0.113.7"],
        minutes=9,
        auth=[_ar("dmarc", "fail", "vendor.com")],
    )
    findings = run(OriginatingIpRule, [plain, spoof, failed])
    assert [(f.key, f.severity) for f in findings] == [
        ("198.51.100.7", "low"),
        ("203.0.113.7", "medium"),
        ("2001:db8::1", "medium"),
    ]
    low, medium, six = findings
    assert medium.reason == (
        "203.0.113.7 in X-Originating-IP of 2 messages from b@acrne-corp.com, c@vendor.com, "
        "first 2024-03-05 09:17 UTC, last 2024-03-05 09:21 UTC; 1 with a lookalike domain; "
        "1 failing authentication"
    )
    assert medium.evidence == {
        "ip": "203.0.113.7",
        "global": False,
        "senders": ["b@acrne-corp.com", "c@vendor.com"],
        "lookalike_domains": ["acrne-corp.com"],
        "lookalike_messages": 1,
        "auth_failure_messages": 1,
        "message_count": 2,
        "messages_listed": 2,
        "first_seen": "2024-03-05T09:17:00+00:00",
        "last_seen": "2024-03-05T09:21:00+00:00",
    }
    assert medium.messages == [ref(spoof), ref(failed)]
    assert medium.indicators == [Indicator("ipv4-addr", "203.0.113.7")]
    assert six.indicators == [Indicator("ipv6-addr", "2001:db8::1")]
    assert low.reason == (
        "198.51.100.7 in X-Originating-IP of 1 message from a@vendor.com, "
        "first 2024-03-05 09:12 UTC, last 2024-03-05 09:12 UTC"
    )


# --- thread-intrusion ------------------------------------------------------------------


def test_normalise_topic_strips_prefixes_and_tags() -> None:
    assert normalise_topic("RE: AW: WG: Invoice 4471 payment") == ("invoice 4471 payment", True)
    assert normalise_topic("RE[2]: [EXTERNAL] Fw:  Invoice 4471   Payment") == (
        "invoice 4471 payment",
        True,
    )
    assert normalise_topic("Fwd: Invoice 4471 payment") == ("invoice 4471 payment", False)
    assert normalise_topic("Re: Invoice") == (None, True)
    assert normalise_topic("Hello") == (None, False)
    assert normalise_topic(None) == (None, False)


def test_conversation_key_from_thread_index_or_conversation_index() -> None:
    raw = bytes(range(22)) + b"\x01\x02\x03\x04\x05"
    assert conversation_key(base64.b64encode(raw).decode(), None) == raw[:22].hex()
    assert conversation_key(None, raw.hex().upper()) == raw[:22].hex()
    assert conversation_key("short", None) is None


def _thread() -> list[MessageRecord]:
    """A payment thread: Jane and Bob, then a lookalike reply without references."""
    return [
        rec(
            "1",
            "Jane Doe <jane@acme-corp.com>",
            to=["bob@vendor.com"],
            subject="Invoice 4471 payment",
            message_id="m1@acme-corp.com",
        ),
        rec(
            "2",
            "Bob Ray <bob@vendor.com>",
            to=["jane@acme-corp.com"],
            subject="RE: Invoice 4471 payment",
            message_id="m2@vendor.com",
            in_reply_to="m1@acme-corp.com",
            references=["m1@acme-corp.com"],
            minutes=30,
        ),
        rec(
            "3",
            "Bob Ray <bob@acrne-corp.com>",
            to=["jane@acme-corp.com"],
            subject="RE: Invoice 4471 payment",
            message_id="m3@acrne-corp.com",
            minutes=45,
        ),
        rec(
            "4",
            "Jane Doe <jane@acme-corp.com>",
            to=["bob@acrne-corp.com"],
            subject="RE: Invoice 4471 payment",
            message_id="m4@acme-corp.com",
            in_reply_to="m3@acrne-corp.com",
            references=["m1@acme-corp.com", "m3@acrne-corp.com"],
            minutes=50,
        ),
    ]


@pytest.mark.parametrize("order", [(0, 1, 2, 3), (3, 2, 1, 0), (2, 0, 3, 1)])
def test_thread_intrusion_lookalike_joins_independent_of_order(order: tuple[int, ...]) -> None:
    thread = _thread()
    finding = only(run(ThreadIntrusionRule, [thread[i] for i in order]))
    assert finding.key == thread[2].doc_id
    assert finding.severity == "critical"
    assert finding.reason == (
        "bob@acrne-corp.com on acrne-corp.com, which imitates acme-corp.com (homoglyph), "
        "joined the conversation 'Invoice 4471 payment' at 2024-03-05 09:57 UTC after "
        "2 messages among 2 participants; previous message from bob@vendor.com at "
        "2024-03-05 09:42 UTC; reply subject without References or In-Reply-To"
    )
    assert finding.evidence == {
        "sender": "bob@acrne-corp.com",
        "domain": "acrne-corp.com",
        "lookalike": {
            "legit_domain": "acme-corp.com",
            "techniques": ["homoglyph"],
            "similarity": 0.8889,
            "distance": 2,
            "unicode": None,
            "detail": HOMOGLYPH.detail,
        },
        "prior_participants": ["bob@vendor.com", "jane@acme-corp.com"],
        "prior_participant_count": 2,
        "prior_message_count": 2,
        "previous_message": {
            "doc_id": thread[1].doc_id,
            "message_id": "m2@vendor.com",
            "subject": "RE: Invoice 4471 payment",
            "timestamp": "2024-03-05T09:42:00+00:00",
            "sender": "bob@vendor.com",
        },
        "linked_by": ["message-id", "topic"],
        "reply_without_references": True,
        "conversation": {
            "topic": "Invoice 4471 payment",
            "message_count": 4,
            "first_seen": "2024-03-05T09:12:00+00:00",
            "last_seen": "2024-03-05T10:02:00+00:00",
            "replies_without_references": 1,
        },
    }
    # Only the joining message: the one before is named in the evidence, not listed.
    assert finding.messages == [ref(thread[2])]
    assert finding.first_seen == finding.last_seen == T0 + timedelta(minutes=45)
    assert finding.timestamp == T0 + timedelta(minutes=45)
    assert finding.indicators == [
        Indicator("email-addr", "bob@acrne-corp.com"),
        Indicator("domain-name", "acrne-corp.com"),
    ]


def test_thread_intrusion_new_outside_sender_and_known_participants() -> None:
    index = base64.b64encode(bytes(range(22)) + b"\x00" * 5).decode()
    messages = [
        rec("1", "jane@acme-corp.com", to=["bob@vendor.com"], subject="Hi", thread_index=index),
        rec("2", "bob@vendor.com", to=["jane@acme-corp.com"], subject="Hi", minutes=5),
        rec(
            "3",
            "eve@other.net",
            to=["jane@acme-corp.com"],
            subject="RE: Hi",
            thread_index=index,
            minutes=10,
        ),
        rec(
            "4",
            "mallory@third.net",
            subject="RE: Hi",
            thread_index=index,
            minutes=20,
        ),
    ]
    finding = only(run(ThreadIntrusionRule, messages))
    assert finding.key == messages[2].doc_id
    assert finding.severity == "high"
    assert finding.reason == (
        "New outside sender eve@other.net joined the conversation 'Hi' at 2024-03-05 09:22 UTC "
        "after 1 message among 2 participants; previous message from jane@acme-corp.com at "
        "2024-03-05 09:12 UTC; reply subject without References or In-Reply-To"
    )
    assert finding.evidence["linked_by"] == ["thread-index"]
    assert finding.evidence["lookalike"] is None
    assert finding.messages == [ref(messages[2])]
    assert finding.first_seen == T0 + timedelta(minutes=10)


def test_thread_intrusion_prior_recipient_and_allowlist_are_not_new() -> None:
    messages = [
        rec(
            "1",
            "jane@acme-corp.com",
            to=["bob@vendor.com"],
            cc=["ann@partner.com"],
            subject="Contract renewal terms",
        ),
        rec(
            "2",
            "bob@vendor.com",
            subject="Re: Contract renewal terms",
            minutes=5,
            in_reply_to="1@mail.example",
        ),
        rec("3", "ann@partner.com", subject="Re: Contract renewal terms", minutes=6),
        rec("4", "sam@partner.com", subject="Re: Contract renewal terms", minutes=7),
    ]
    assert run(ThreadIntrusionRule, messages) == []


def test_thread_intrusion_needs_a_legit_participant_for_outside_joins() -> None:
    messages = [
        rec("1", "a@vendor.com", to=["b@other.net"], subject="Weekly digest for you"),
        rec("2", "c@third.net", subject="Re: Weekly digest for you", minutes=5),
    ]
    assert run(ThreadIntrusionRule, messages) == []


def _list_thread() -> list[MessageRecord]:
    """A list thread: Frank on the legitimate domain starts it, two posters answer."""
    return [
        rec(
            "1",
            "frank@acme-corp.com",
            to=["shapelib@lists.maptools.org"],
            subject="[Shapelib] DBF field width problem",
            message_id="m1@acme-corp.com",
            headers=LIST_HEADERS,
        ),
        rec(
            "2",
            "ann@vendor.com",
            to=["shapelib@lists.maptools.org"],
            subject="Re: [Shapelib] DBF field width problem",
            in_reply_to="m1@acme-corp.com",
            minutes=5,
            headers=LIST_HEADERS[2:],
        ),
        rec(
            "3",
            "frank@acrne-corp.com",
            to=["shapelib@lists.maptools.org"],
            subject="Re: [Shapelib] DBF field width problem",
            in_reply_to="m1@acme-corp.com",
            minutes=9,
            headers=LIST_HEADERS[1:2],
        ),
    ]


def test_thread_intrusion_on_a_list_reports_lookalikes_not_new_posters() -> None:
    thread = _list_thread()
    finding = only(run(ThreadIntrusionRule, thread))
    assert (finding.key, finding.severity) == (thread[2].doc_id, "critical")
    assert finding.messages == [ref(thread[2])]


def test_thread_intrusion_new_poster_without_list_fields_is_reported() -> None:
    thread = _list_thread()
    thread[1].headers = Headers()
    findings = run(ThreadIntrusionRule, thread)
    assert [(f.key, f.severity) for f in findings] == [
        (thread[1].doc_id, "medium"),
        (thread[2].doc_id, "critical"),
    ]


# --- subject-match ---------------------------------------------------------------------


def test_subject_match_findings_and_csv_row() -> None:
    case = StubCase(subject_pattern=compile_subject_pattern(r"invoice\s+\d+"))
    hit = rec("1", to=["bob@vendor.com", "ap@vendor.com"], subject="RE: Invoice 4471 payment")
    miss = rec("2", subject="Lunch")
    none = rec("3", subject=None)
    finding = only(run(SubjectMatchRule, [hit, miss, none], case))
    assert finding.key == hit.doc_id
    assert finding.severity == "low"
    assert finding.reason == (
        "Subject 'RE: Invoice 4471 payment' matches 'invoice\\\\s+\\\\d+' (matched "
        "'Invoice 4471'); from jane@acme-corp.com at 2024-03-05 09:12 UTC"
    )
    assert finding.evidence == {
        "date": "2024-03-05T09:12:00+00:00",
        "from": "jane@acme-corp.com",
        "to": ["bob@vendor.com", "ap@vendor.com"],
        "subject": "RE: Invoice 4471 payment",
        "message_id": "1@mail.example",
        "doc_id": hit.doc_id,
        "pattern": "invoice\\s+\\d+",
        "matched": "Invoice 4471",
    }
    assert SUBJECT_MATCH_COLUMNS == ("date", "from", "to", "subject", "message_id", "doc_id")
    assert subject_match_row(finding) == (
        "2024-03-05T09:12:00+00:00",
        "jane@acme-corp.com",
        "bob@vendor.com; ap@vendor.com",
        "RE: Invoice 4471 payment",
        "1@mail.example",
        hit.doc_id,
    )
    with pytest.raises(ValueError):
        subject_match_row(Finding("other", "Other", "low", "x", "k"))


def test_subject_match_is_off_without_a_pattern() -> None:
    assert run(SubjectMatchRule, [rec("1", subject="Invoice 4471")]) == []


# --- payment-language ------------------------------------------------------------------


def test_payment_phrases() -> None:
    text = (
        "Due to an audit we had a change of our bank details. Please update the IBAN and "
        "routing number before the wire; ACH is no longer accepted. Urgent! Buy gift cards, "
        "send the W-2 forms."
    )
    assert payment_phrases(text) == [
        "change of bank details",
        "IBAN",
        "wire",
        "ACH",
        "routing number",
        "urgent",
        "gift cards",
        "W-2",
    ]
    assert payment_phrases("ach, wireless, swiftly, the invoice") == []
    assert payment_phrases("Our banking details are below") == ["bank details"]


def _plain_phrases(text: str) -> list[str]:
    """The labels of one plain left-to-right scan with every phrase (the definition)."""
    found = {int(hit.lastgroup[1:]) for hit in _SCANNER.finditer(text) if hit.lastgroup}
    return [PAYMENT_PHRASES[index][0] for index in sorted(found)]


#: Words and pieces of the phrases, their near misses, odd cases and separators.
_PHRASE_PIECES = (
    "change", "changed", "of", "our", "bank", "banking", "details", "new", "account",
    "number", "no.", "#", "updated", "update", "payment", "wire", "wired", "wireless",
    "IBAN", "iban", "swift", "/", "bic", "code", "sort", "ACH", "ach", "each", "aba",
    "routing", "overdue", "past", "-", "due", "invoice", "unpaid", "balances", "urgent",
    "ASAP", "gift", "google", "play", "cards", "W-2", "W2s", "w2", "direct", "deposit",
    "payroll", "neue", "Bankverbindung", "Änderung", "unserer", "İBAN", "ſort", "K",
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(_PHRASE_PIECES),
            st.sampled_from([" ", "  ", "\n", ", ", "", ".", "-", "\u00a0"]),
            st.booleans(),
        ),
        max_size=14,
    )
)
def test_payment_phrases_fast_scan_equals_plain_scan(parts: list[tuple[str, str, bool]]) -> None:
    text = "".join((word.upper() if upper else word) + sep for word, sep, upper in parts)
    assert payment_phrases(text) == _plain_phrases(text)


def test_payment_phrases_fast_scan_on_long_text() -> None:
    filler = "Please find the minutes of the weekly meeting attached. " * 300
    text = filler + "Kindly note our new bank account details; the invoice is overdue. " + filler
    assert payment_phrases(text) == _plain_phrases(text) == ["new bank account"]
    assert payment_phrases(filler) == _plain_phrases(filler) == []


def test_payment_language_low_and_medium() -> None:
    internal = rec("1", subject="Urgent: payroll change", body="")
    outside = rec("2", "ap@vendor.com", subject="Invoice", body="Our new bank account details.")
    findings = run(PaymentLanguageRule, [internal, outside, rec("3", body="See you at lunch")])
    assert [(f.key, f.severity) for f in findings] == [
        (internal.doc_id, "low"),
        (outside.doc_id, "medium"),
    ]
    assert findings[0].reason == (
        "Payment language (urgent, payroll change) in 'Urgent: payroll change' from "
        "jane@acme-corp.com at 2024-03-05 09:12 UTC"
    )
    assert findings[0].evidence["in_subject"] == ["urgent", "payroll change"]
    assert findings[1].reason == (
        "Payment language (new bank account) in 'Invoice' from ap@vendor.com at "
        "2024-03-05 09:12 UTC; outside sender vendor.com"
    )
    assert findings[1].evidence["in_body"] == ["new bank account"]
    assert findings[1].messages == [ref(outside)]


def test_urgency_alone_is_low_even_from_outside() -> None:
    digest = rec("1", "ann@vendor.com", subject="Re: Shapelib Digest", body="Urgent: reply ASAP")
    wire = rec("2", "ann@vendor.com", subject="Urgent", body="Send the wire today.")
    findings = run(PaymentLanguageRule, [digest, wire])
    assert [(f.key, f.severity, f.evidence["phrases"]) for f in findings] == [
        (digest.doc_id, "low", ["urgent"]),
        (wire.doc_id, "medium", ["wire", "urgent"]),
    ]
    assert findings[0].reason == (
        "Payment language (urgent) in 'Re: Shapelib Digest' from ann@vendor.com at "
        "2024-03-05 09:12 UTC; outside sender vendor.com"
    )


#: Pieces of IBANs and of text around them, with near misses.
_IBAN_PIECES = (
    "GB82", "WEST", "1234", "5698", "7654", "32", "DE89", "3704", "0044", "0532", "0130",
    "00", "LT12", "1000", "0111", "0100", "gb82", "X", "Ä", "٣", " ", " ", "\u00a0", "\n",
    "-", "IBAN:", "a",
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_IBAN_PIECES), max_size=16))
def test_find_ibans_quick_test_loses_nothing(pieces: list[str]) -> None:
    text = "".join(pieces)
    assert find_ibans(text) == _search_ibans(text)


def test_iban_checks_length_and_mod_97() -> None:
    assert iban_checks("GB82WEST12345698765432")
    assert iban_checks("DE89370400440532013000")
    assert iban_checks("LT121000011101001000")
    assert not iban_checks("GB82WEST12345698765433")  # check digits
    assert not iban_checks("LT1210000111010010001")  # one character too many
    assert not iban_checks("ZZ121000011101001000")  # no such country in the table


def test_find_ibans_printed_and_electronic() -> None:
    text = (
        "IBAN: LT12 1000 0111 0100 1000 BIC HABALT22\n"
        "old: IT60 X054 2811 1010 0000 0123 456, also DE89370400440532013000.\n"
        "Not IBANs: GB82 WEST 1234 5698 7654 33, LT121000011101001000123, lt12 1000 0111 "
        "0100 1000, again LT121000011101001000; NO93\u00a08601\u00a01117\u00a0947"
    )
    assert find_ibans(text) == [
        "LT121000011101001000",
        "IT60X0542811101000000123456",
        "DE89370400440532013000",
        "NO9386011117947",
    ]
    # An IBAN that starts further on in a run of upper-case groups.
    assert find_ibans("REF AB12 LT12 1000 0111 0100 1000") == ["LT121000011101001000"]
    assert find_ibans("AB12" + "9" * 50_000) == []


def test_payment_language_names_the_ibans_asked_for() -> None:
    record = rec(
        "1",
        "bob@acrne-corp.com",
        subject="Invoice 4471",
        body="Please pay into our new bank account, LT12 1000 0111 0100 1000, urgently.",
    )
    only_number = rec("2", body="Pay to GB82 WEST 1234 5698 7654 32 from now on.")
    findings = run(PaymentLanguageRule, [record, only_number])
    assert [(f.severity, f.evidence["ibans"]) for f in findings] == [
        ("high", ["LT121000011101001000"]),
        ("low", ["GB82WEST12345698765432"]),
    ]
    assert findings[0].reason == (
        "Payment language (new bank account, IBAN LT121000011101001000, urgent) in "
        "'Invoice 4471' from bob@acrne-corp.com at 2024-03-05 09:12 UTC; lookalike "
        "acrne-corp.com"
    )
    assert findings[0].evidence["phrases"] == ["new bank account", "IBAN", "urgent"]
    # A bare IBAN counts as the phrase "IBAN", in the body only.
    assert findings[1].evidence["in_subject"] == []
    assert findings[1].evidence["in_body"] == ["IBAN"]
    assert findings[1].reason.startswith("Payment language (IBAN GB82WEST12345698765432) in")


def test_payment_language_names_lookalike_and_auth_context() -> None:
    record = rec(
        "1",
        "bob@acrne-corp.com",
        subject="Updated remittance instructions",
        auth=[_ar("dmarc", "fail", "acrne-corp.com")],
    )
    finding = only(run(PaymentLanguageRule, [record]))
    assert finding.severity == "high"
    assert finding.reason.endswith("; lookalike acrne-corp.com; auth dmarc=fail (acrne-corp.com)")
    assert finding.evidence["outside_sender"] is True
    assert finding.indicators == [Indicator("domain-name", "acrne-corp.com")]


def test_payment_language_is_high_when_the_one_asking_poses_as_a_party() -> None:
    """High: the sender is a lookalike, or a legitimate address DMARC refused. Medium: a
    lookalike elsewhere in the message, or an outside sender. Urgency alone: low."""
    ask = "Please use our updated remittance instructions."
    spoofed = rec("1", "cfo@acme-corp.com", body=ask, auth=[_ar("dmarc", "fail", "acme-corp.com")])
    copied = rec("2", "jane@acme-corp.com", cc=["bob@acrne-corp.com"], body=ask)
    outside = rec("3", "bob@example.net", body=ask)
    hurried = rec("4", "bob@acrne-corp.com", body="Urgent, please reply asap.")
    legit = rec("5", "jane@acme-corp.com", body=ask)
    findings = run(PaymentLanguageRule, [spoofed, copied, outside, hurried, legit])
    assert [(f.messages[0].item_id, f.severity) for f in findings] == [
        ("1", "high"),
        ("2", "medium"),
        ("3", "medium"),
        ("4", "low"),
        ("5", "low"),
    ]


def test_urgency_alone_in_list_traffic_gives_no_payment_finding() -> None:
    digest = rec(
        "1",
        "list@lists.example.org",
        body="Urgent: please reply asap.",
        headers=[("List-Id", "<dev.lists.example.org>")],
    )
    bulk = rec("2", "news@example.org", body="URGENT update", headers=[("Precedence", "bulk")])
    asking = rec(
        "3",
        "list@lists.example.org",
        body="Please use our new bank account asap.",
        headers=[("List-Id", "<dev.lists.example.org>")],
    )
    direct = rec("4", "bob@example.net", body="Urgent: please reply asap.")
    findings = run(PaymentLanguageRule, [digest, bulk, asking, direct])
    assert [(f.messages[0].item_id, f.evidence["phrases"]) for f in findings] == [
        ("3", ["new bank account", "urgent"]),
        ("4", ["urgent"]),
    ]


# --- with the real lookalike engine ----------------------------------------------------


def test_real_engine_end_to_end() -> None:
    case = CaseContext(legit_domains=("acme-corp.com",), allowlist=("partner.com",))
    records = _thread()
    findings = list(run_rules(case, records))
    by_rule = {(f.rule_id, f.key): f for f in findings}
    domain = by_rule[("lookalike-domain", "acrne-corp.com")]
    assert domain.severity == "critical"
    assert domain.evidence["legit_domain"] == "acme-corp.com"
    assert domain.evidence["techniques"][0] == "homoglyph"  # type: ignore[index]
    assert domain.evidence["places"] == {"from": 1, "to": 1, "message_id": 1}
    assert by_rule[("thread-intrusion", records[2].doc_id)].severity == "critical"
    assert ("suspicious-mailbox", "bob@acrne-corp.com") in by_rule
    assert not any(f.key == "acme-corp.com" or "partner.com" in f.key for f in findings)
