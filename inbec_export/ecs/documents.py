"""Map message records and findings to Elastic Common Schema (ECS) documents.

ECS has no fields for authentication results, display names, Return-Path, Received hops
or the evidence an item came from: those live under the one custom namespace ``inbec``.
Every document carries ``_id``-ready deterministic ids (see :attr:`MessageRecord.doc_id`
and :attr:`Finding.doc_id`), so a re-run of the same evidence gives the same documents.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from inbec_export import ECS_VERSION, __version__
from inbec_export.case import CaseContext
from inbec_export.detections._common import auth_failures, refuses_from_domain
from inbec_export.domains import FULL_STOPS, registrable
from inbec_export.model import (
    ADDRESS_FIELDS,
    SEVERITY_SCORES,
    Address,
    Finding,
    MessageRecord,
)
from inbec_export.readers.headers import is_public_ip, normalise_ip

#: ``event.dataset`` of each document kind; also the kind names of the case folder files.
MESSAGE_DATASET = "inbec.message"
FINDING_DATASET = "inbec.finding"

Document = dict[str, Any]


def iso(value: datetime | None) -> str | None:
    """ISO 8601 with offset, millisecond precision (what Elasticsearch's date type keeps)."""
    if value is None:
        return None
    return value.isoformat(timespec="milliseconds")


def _addresses(addresses: list[Address]) -> list[str]:
    return [a.address for a in addresses if a.address]


def _names(addresses: list[Address]) -> list[str]:
    return [a.name for a in addresses if a.name]


def _unique(values: Iterable[str | None]) -> list[str]:
    seen: dict[str, None] = {}
    for value in values:
        if value:
            seen.setdefault(value, None)
    return list(seen)


def _prune(value: Any) -> Any:
    """Drop None, empty strings, empty lists and empty objects, recursively."""
    if isinstance(value, dict):
        return _prune_dict(value)
    if isinstance(value, list):
        return _prune_list(value)
    return value


# One pass per container, recursing only into containers. Message documents are built
# without empty values (``_given``); this prunes the smaller, irregular parts.
def _prune_dict(value: dict[str, Any]) -> dict[str, Any]:
    pruned: dict[str, Any] = {}
    for key, item in value.items():
        kept = _kept(item)
        if kept is not _DROP:
            pruned[key] = kept
    return pruned


def _prune_list(value: list[Any]) -> list[Any]:
    pruned: list[Any] = []
    for item in value:
        kept = _kept(item)
        if kept is not _DROP:
            pruned.append(kept)
    return pruned


_DROP = object()


def _kept(item: Any) -> Any:
    """``item`` pruned, or ``_DROP`` when it is None or empty (after pruning)."""
    if item is None:
        return _DROP
    if isinstance(item, dict):
        item = _prune_dict(item)
    elif isinstance(item, list):
        item = _prune_list(item)
    elif not isinstance(item, str):
        return item
    return item if item else _DROP


def source_ip(record: MessageRecord) -> str | None:
    """The IP the message came from: X-Originating-IP, else the first global relay IP.

    Received hops are listed newest first, so the last hop with a global IP is the one
    closest to the sender.
    """
    if record.originating_ips:
        return record.originating_ips[0]
    for hop in reversed(record.hops):
        if hop.ip and is_public_ip(hop.ip):
            return hop.ip
    return None


def message_domains(record: MessageRecord) -> list[str]:
    """Every host name the message names: address domains, relays, Message-ID host."""
    hosts = [address.domain for _, address in record.all_addresses()]
    for hop in record.hops:
        hosts.extend([hop.from_host or "", hop.by_host or ""])
    if record.message_id and "@" in record.message_id:
        hosts.append(record.message_id.rpartition("@")[2].strip(">").lower())
    return _unique(
        h for h in hosts if h and "." in h.translate(FULL_STOPS) and normalise_ip(h) is None
    )


def _auth(record: MessageRecord) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for result in record.auth_results:
        entry = summary.setdefault(result.method, {"result": [], "domain": []})
        entry["result"].append(result.result)
        entry["domain"].append(result.domain)
    auth: dict[str, Any] = {
        method: {"result": _unique(v["result"]), "domain": _unique(v["domain"])}
        for method, v in summary.items()
        if method in {"spf", "dkim", "dmarc", "compauth", "arc"}
    }
    auth["results"] = [
        {
            "method": r.method,
            "result": r.result,
            "domain": r.domain,
            "source": r.source,
            "authserv_id": r.authserv_id,
            "reason": r.reason,
        }
        for r in record.auth_results
    ]
    return auth


def _lookalike(record: MessageRecord, case: CaseContext, hosts: list[str]) -> dict[str, Any]:
    """The lookalike flags of a message whose host names (:func:`message_domains`) are
    ``hosts``."""
    matches = {}
    matched: set[str] = set()
    for host in hosts:
        match = case.lookalike(host)
        if match is not None:
            matches[match.domain] = match
            matched.add(host)
    # The sender is a lookalike when its host matched, or when its registrable domain is
    # one a match names (the attacker's domain behind a subdomain lookalike).
    sender = any(
        a.domain in matched or registrable(a.domain) in matches for a in record.from_ if a.domain
    )
    return {
        "domains": sorted(matches),
        "legit_domains": sorted({m.legit_domain for m in matches.values()}),
        "techniques": sorted({t for m in matches.values() for t in m.techniques}),
        "sender": sender,
    }


def message_document(
    record: MessageRecord, case: CaseContext, rule_ids: Iterable[str] = ()
) -> Document:
    """The ECS document of one message record.

    Args:
        record: the message.
        case: the case settings (case id, legitimate domains for the lookalike flags).
        rule_ids: ids of the rules that raised a finding on this message as it streamed.

    Returns:
        A JSON-serialisable document with ``_id`` left out (use ``record.doc_id``): no
        field is None or empty, but booleans and counts that are false or zero are kept.
    """
    # Built with only the values that are given (``_given`` at each level), not pruned
    # afterwards: this runs once per message, and a document has a hundred and more
    # values, most of them in small objects.
    ips = _unique([*record.originating_ips, *(hop.ip for hop in record.hops if hop.ip is not None)])
    hosts = message_domains(record)
    lookalike = _lookalike(record, case, hosts)
    from_domains = [a.domain for a in record.from_ if a.domain]
    email = _given(
        {
            "from": _given({"address": _addresses(record.from_)}),
            "sender": _given({"address": next(iter(_addresses(record.sender)), None)}),
            "reply_to": _given({"address": _addresses(record.reply_to)}),
            "to": _given({"address": _addresses(record.to)}),
            "cc": _given({"address": _addresses(record.cc)}),
            "bcc": _given({"address": _addresses(record.bcc)}),
            "subject": record.subject,
            "message_id": record.message_id,
            "origination_timestamp": iso(record.date),
            "delivery_timestamp": iso(record.delivery_time),
            "x_mailer": record.x_mailer,
            "content_type": record.content_type,
            "local_id": record.item_id,
            "attachments": _attachment_documents(record),
        }
    )
    inbec = _given(
        {
            "case": _given({"id": case.case_id}),
            "tool": _given({"version": __version__}),
            "evidence": _given(
                {
                    "path": record.evidence_path,
                    "sha256": record.evidence_sha256,
                    "format": record.evidence_format,
                    "folder": record.folder,
                    "item_id": record.item_id,
                    "parent_item_id": record.parent_item_id,
                }
            ),
            "message_class": record.message_class,
            "has_transport_headers": record.has_transport_headers,
            "subject_raw": record.subject_raw if record.subject_raw != record.subject else None,
            "subject_decode_error": record.subject_decode_error,
            "date_raw": record.date_raw,
            "submit_timestamp": iso(record.submit_time),
            "display_names": _given({f: _names(record.addresses(f)) for f in ADDRESS_FIELDS}),
            "return_path": _given({"address": _addresses(record.return_path)}),
            "sender_type": _sender_type(from_domains, lookalike["sender"], case, record),
            "from_domain": _unique(registrable(d) for d in from_domains),
            "reply_to_domain": _unique(registrable(a.domain) for a in record.reply_to),
            "in_reply_to": record.in_reply_to,
            "references": _texts(record.references),
            "thread": _given(
                {
                    "index": record.thread_index,
                    "topic": record.thread_topic,
                    "conversation_index": record.conversation_index,
                }
            ),
            "originating_ip": _texts(record.originating_ips),
            "hops": _hop_documents(record),
            "auth": _prune(_auth(record)),
            # The sender flag and the count are kept when false or zero: they still say
            # something.
            "lookalike": {
                **_given(
                    {key: lookalike[key] for key in ("domains", "legit_domains", "techniques")}
                ),
                "sender": lookalike["sender"],
            },
            "attachment": {
                **_given({"names": _unique(a.name for a in record.attachments)}),
                "count": len(record.attachments),
            },
            "finding": _given({"rule_ids": sorted(set(rule_ids))}),
            "body": record.body,
            "body_truncated": record.body_truncated,
            "warnings": _texts(record.warnings),
        }
    )
    return _given(
        {
            "@timestamp": iso(record.timestamp),
            "ecs": {"version": ECS_VERSION},
            "event": {
                "kind": "event",
                "category": ["email"],
                "type": ["info"],
                "dataset": MESSAGE_DATASET,
                "module": "inbec",
                "id": record.doc_id,
            },
            "message": _summary_line(record),
            "email": email,
            "source": _given({"ip": source_ip(record)}),
            "related": _given(
                {
                    "ip": ips,
                    "hosts": hosts,
                    "hash": _unique(a.sha256 for a in record.attachments),
                }
            ),
            "inbec": inbec,
        }
    )


#: Values that count as not given when empty (what ``_prune`` drops besides None).
_EMPTYABLE = (str, list, dict)


def _given(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` without the ones that are None or empty (one level: the values are
    built the same way, or are lists of non-empty texts)."""
    return {
        key: value
        for key, value in values.items()
        if value is not None and (value or not isinstance(value, _EMPTYABLE))
    }


def _texts(values: list[str]) -> list[str]:
    """The non-empty texts of ``values``, in order."""
    return [value for value in values if value]


def _attachment_documents(record: MessageRecord) -> list[Document]:
    """``email.attachments``, with no empty value."""
    files = (
        _given(
            {
                "name": attachment.name,
                "mime_type": attachment.mime_type,
                "size": attachment.size,
                "hash": _given({"sha256": attachment.sha256}),
            }
        )
        for attachment in record.attachments
    )
    return [{"file": file} for file in files if file]


def _hop_documents(record: MessageRecord) -> list[Document]:
    """``inbec.hops``, with no empty value."""
    documents = (
        _given(
            {
                "from_host": hop.from_host,
                "by_host": hop.by_host,
                "ip": hop.ip,
                "timestamp": iso(hop.timestamp),
                "protocol": hop.protocol,
            }
        )
        for hop in record.hops
    )
    return [document for document in documents if document]


def _sender_type(
    from_domains: list[str], is_lookalike: bool, case: CaseContext, record: MessageRecord
) -> str:
    """Classify the From domain(s): lookalike, legitimate, spoofed (a legitimate domain
    that the receiving server's DMARC or compauth did not authenticate), allowlisted,
    outside or unknown."""
    if is_lookalike:
        return "lookalike"
    if not from_domains:
        return "unknown"
    if all(case.is_legit(d) for d in from_domains):
        return "spoofed" if refuses_from_domain(auth_failures(case, record)) else "legitimate"
    if all(case.is_trusted(d) for d in from_domains):
        return "allowlisted"
    return "outside"


def _summary_line(record: MessageRecord) -> str:
    sender = record.from_[0].address if record.from_ else "(no sender)"
    recipients = ", ".join(_addresses(record.to)[:3]) or "(no recipients)"
    if len(record.to) > 3:
        recipients += f" (+{len(record.to) - 3})"
    return f"{sender} -> {recipients}: {record.subject or '(no subject)'}"


_INDICATOR_FIELDS = {
    "domain-name": ("url", "domain"),
    "email-addr": ("email", "address"),
    "ipv4-addr": ("ip", None),
    "ipv6-addr": ("ip", None),
}


def _indicator(finding: Finding) -> dict[str, Any]:
    if not finding.indicators:
        return {}
    first = finding.indicators[0]
    indicator: dict[str, Any] = {"type": first.type, "description": finding.reason}
    for item in finding.indicators:
        group, leaf = _INDICATOR_FIELDS[item.type]
        if leaf is None:
            indicator.setdefault(group, item.value)
        else:
            indicator.setdefault(group, {}).setdefault(leaf, item.value)
        if item.type == "email-addr" and "@" in item.value:
            indicator.setdefault("url", {}).setdefault("domain", item.value.rpartition("@")[2])
    return indicator


def finding_document(finding: Finding, case: CaseContext) -> Document:
    """The ECS alert document of one finding (``event.kind: alert``)."""
    severity, risk = SEVERITY_SCORES[finding.severity]
    refs = finding.messages
    ips = [i.value for i in finding.indicators if i.type in {"ipv4-addr", "ipv6-addr"}]
    hosts = [i.value for i in finding.indicators if i.type == "domain-name"]
    hosts += [i.value.rpartition("@")[2] for i in finding.indicators if i.type == "email-addr"]
    document: Document = {
        "@timestamp": iso(finding.timestamp),
        "ecs": {"version": ECS_VERSION},
        "event": {
            "kind": "alert",
            "category": ["email", "threat"],
            "type": ["indicator"],
            "dataset": FINDING_DATASET,
            "module": "inbec",
            "id": finding.doc_id,
            "severity": severity,
            "risk_score": risk,
            "reason": finding.reason,
            "start": iso(finding.first_seen),
            "end": iso(finding.last_seen),
        },
        "message": finding.reason,
        "rule": {
            "id": finding.rule_id,
            "name": finding.rule_name,
            "ruleset": "inbec",
            "category": "business-email-compromise",
        },
        "threat": {"indicator": _indicator(finding)},
        "email": {
            "message_id": _unique(r.message_id for r in refs),
            "subject": _unique(r.subject for r in refs),
            "from": {"address": _unique(r.sender for r in refs)},
            "to": {"address": _unique(a for r in refs for a in r.recipients)},
        },
        "source": {"ip": next((r.source_ip for r in refs if r.source_ip), None)},
        "related": {
            "ip": _unique([*ips, *(r.source_ip for r in refs)]),
            "hosts": _unique(hosts),
        },
        "inbec": {
            "case": {"id": case.case_id},
            "tool": {"version": __version__},
            "finding": {
                "key": finding.key,
                "severity": finding.severity,
                "message_count": _message_count(finding),
                "message_doc_ids": [r.doc_id for r in refs],
                "messages": [
                    {
                        "doc_id": r.doc_id,
                        "message_id": r.message_id,
                        "subject": r.subject,
                        "timestamp": iso(r.timestamp),
                        "sender": r.sender,
                        "recipients": list(r.recipients),
                        "source_ip": r.source_ip,
                        "evidence_path": r.evidence_path,
                        "item_id": r.item_id,
                    }
                    for r in refs
                ],
                "indicators": [{"type": i.type, "value": i.value} for i in finding.indicators],
                "ibans": _string_list(finding.evidence.get("ibans")),
                **_flat_evidence(finding.evidence),
                "evidence": finding.evidence,
            },
        },
    }
    pruned: Document = _prune(document)
    # Evidence values are the rule's own; keep them whole (empty lists say "none").
    pruned["inbec"]["finding"]["evidence"] = finding.evidence
    return pruned


def _flat_evidence(evidence: dict[str, Any]) -> dict[str, Any]:
    """Keyword copies of the evidence values dashboards chart (evidence itself is stored,
    not indexed): the lookalike match, the fields or places a value was seen in, and the
    failing authentication results as ``method=result``."""
    lookalike: dict[str, Any] = {}
    if isinstance(evidence.get("legit_domain"), str):
        lookalike = {
            "domain": evidence.get("domain"),
            "legit_domain": evidence["legit_domain"],
            "techniques": _string_list(evidence.get("techniques")),
        }
    seen = evidence.get("fields", evidence.get("places"))
    seen_in = list(seen) if isinstance(seen, dict) else _string_list(seen)
    failures = evidence.get("failures")
    auth_failures = _unique(
        f"{failure.get('method')}={failure.get('result')}"
        for failure in (failures if isinstance(failures, list) else [])
        if isinstance(failure, dict) and failure.get("method")
    )
    return {"lookalike": lookalike, "seen_in": seen_in, "auth_failures": auth_failures}


def _string_list(value: object) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _message_count(finding: Finding) -> int:
    count = finding.evidence.get("message_count")
    return count if isinstance(count, int) else len(finding.messages)
