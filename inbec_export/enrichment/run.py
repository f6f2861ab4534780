"""The enrichment step of a run: what to look up, the lookups, and what they add.

Looked up, and nothing else:

- WHOIS: each lookalike domain (never a legitimate or allowlisted one);
- VirusTotal: each lookalike domain, then each global X-Originating-IP address, then each
  global relay IP (Received hop) of the messages that involve a lookalike domain, in that
  order, so that a small quota goes to what matters most;
- GeoIP: the same IP addresses, offline.

The lookalike-domain finding is told its domain's age at its first message: a domain
registered at most :data:`YOUNG_DOMAIN_DAYS` days before it joined the conversation
raises the finding to critical.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from inbec_export.case import CaseContext
from inbec_export.detections._common import plural
from inbec_export.ecs.timeline import Event
from inbec_export.enrichment import documents as docs
from inbec_export.enrichment.cache import ResponseCache
from inbec_export.enrichment.documents import Document, IndicatorType, Target
from inbec_export.enrichment.geoip import GeoIpDatabases, GeoResult
from inbec_export.enrichment.virustotal import (
    ObjectKind,
    VirusTotalClient,
    VirusTotalConfig,
    VirusTotalResult,
)
from inbec_export.enrichment.whois import WhoisClient, WhoisConfig, WhoisRecord, WhoisResult
from inbec_export.model import Finding, MessageRecord

logger = logging.getLogger(__name__)

#: A lookalike domain registered at most this many days before its first message is
#: "young": made for the fraud, the strongest sign a WHOIS record gives.
YOUNG_DOMAIN_DAYS = 30

#: Message document ids kept per relay IP (the rest are counted only).
MAX_MESSAGE_REFS = 50

_SECONDS_PER_DAY = 86_400


@dataclass(frozen=True)
class EnrichmentConfig:
    """Which sources to ask (None or empty: not that one)."""

    whois: WhoisConfig | None = None
    virustotal: VirusTotalConfig | None = None
    geoip_databases: tuple[Path, ...] = ()

    @property
    def enabled(self) -> bool:
        """True when any source is on."""
        return bool(self.whois or self.virustotal or self.geoip_databases)


def is_global_ip(value: str) -> bool:
    """True for an address routed on the internet (Python's ``is_global``)."""
    try:
        return ipaddress.ip_address(value).is_global
    except ValueError:
        return False


def _ip_type(value: str) -> IndicatorType:
    return "ipv6-addr" if ":" in value else "ipv4-addr"


def domain_age_days(created: datetime, first_seen: datetime) -> int:
    """Whole days from registration to the first message (negative: registered after)."""
    return int((first_seen - created).total_seconds() // _SECONDS_PER_DAY)


@dataclass
class _Outcome:
    """The documents, entries and events of the lookups, and what failed."""

    documents: list[tuple[str, Document]] = field(default_factory=list)
    entries: dict[str, list[Document]] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


class Enricher:
    """Collects what to look up while the run streams, then looks it up at the end."""

    def __init__(self, config: EnrichmentConfig, case: CaseContext, case_dir: Path) -> None:
        self.config = config
        self.case = case
        self.case_dir = case_dir
        self.geoip = (
            GeoIpDatabases(list(config.geoip_databases)) if config.geoip_databases else None
        )
        self._relays: dict[str, Target] = {}
        self.outcome = _Outcome()

    def close(self) -> None:
        """Release the GeoIP database files."""
        if self.geoip is not None:
            self.geoip.close()

    def observe(self, record: MessageRecord, rule_ids: list[str]) -> None:
        """Note the global relay IPs of a message that involves a lookalike domain."""
        if "lookalike-message" not in rule_ids:
            return
        for hop in record.hops:
            ip = hop.ip
            if ip is None or not is_global_ip(ip) or ip in record.originating_ips:
                continue
            target = self._relays.get(ip)
            if target is None:
                target = self._relays[ip] = Target(ip, _ip_type(ip), "relay IP")
            when = record.timestamp
            if when is not None and (target.first_seen is None or when < target.first_seen):
                target.first_seen = when
            if len(target.message_doc_ids) < MAX_MESSAGE_REFS:
                target.message_doc_ids.append(record.doc_id)

    def run(self, findings: list[Finding]) -> list[Finding]:
        """Look the indicators of ``findings`` up; lookalike findings learn their age."""
        # A domain written with hidden characters (not ASCII, not punycode) is in no
        # registry: looked up, it would answer for the legitimate domain it shows as.
        domains = [
            _target(f, f.key, "domain-name", "lookalike domain")
            for f in findings
            if f.rule_id == "lookalike-domain" and f.key.isascii()
        ]
        ips = [
            _target(f, f.key, _ip_type(f.key), "originating IP")
            for f in findings
            if f.rule_id == "originating-ip" and is_global_ip(f.key)
        ]
        ips += [t for ip, t in sorted(self._relays.items()) if ip not in {i.value for i in ips}]
        if self.config.whois is not None:
            by_domain = {f.key: f for f in findings if f.rule_id == "lookalike-domain"}
            self._whois(self.config.whois, domains, by_domain)
        if self.config.virustotal is not None:
            self._virustotal(self.config.virustotal, [*domains, *ips])
        if self.geoip is not None:
            self._geoip(self.geoip, ips)
        return findings

    def entries_for(self, finding: Finding) -> list[Document]:
        """The ``threat.enrichments`` entries of a finding (none when nothing was found)."""
        return self.outcome.entries.get(finding.doc_id, [])

    def _add(self, target: Target, doc_id: str, document: Document, entry: Document) -> None:
        self.outcome.documents.append((doc_id, document))
        for finding_id in target.finding_doc_ids:
            self.outcome.entries.setdefault(finding_id, []).append(entry)

    def _whois(
        self, config: WhoisConfig, targets: list[Target], findings: dict[str, Finding]
    ) -> None:
        client = WhoisClient(config, ResponseCache(self.case_dir, "whois"))
        results = client.lookup_all(t.value for t in targets)
        records: list[dict[str, Any]] = []
        failed: list[dict[str, str]] = []
        for target in targets:
            result = results[target.value]
            if result.record is None:
                logger.warning("WHOIS %s not looked up: %s", target.value, result.error)
                failed.append({"value": target.value, "reason": str(result.error)})
                continue
            age = self._whois_result(target, result, findings.get(target.value))
            records.append(_whois_summary(result.record, age))
        self.outcome.summary["whois"] = {
            "domains": len(targets),
            "records": records,
            "not_looked_up": failed,
        }

    def _whois_result(
        self, target: Target, result: WhoisResult, finding: Finding | None
    ) -> int | None:
        record = result.record
        assert record is not None
        created = record.creation.value
        first = target.first_seen
        age = domain_age_days(created, first) if created and first else None
        document = docs.whois_document(record, target, self.case, age, result.retrieved)
        doc_id = docs.enrichment_id("whois", target.value)
        self._add(target, doc_id, document, docs.whois_entry(record, target))
        event = docs.whois_event(record, target, age)
        if event is not None:
            self.outcome.events.append(event)
        if finding is not None:
            tell_age(finding, record, age)
        return age

    def _virustotal(self, config: VirusTotalConfig, targets: list[Target]) -> None:
        client = VirusTotalClient(config, ResponseCache(self.case_dir, "virustotal"))
        objects: list[tuple[ObjectKind, str]] = [
            ("domain" if t.is_domain else "ip_address", t.value) for t in targets
        ]
        try:
            results = client.lookup_all(objects)
        finally:
            client.close()
        reports: list[dict[str, Any]] = []
        not_found: list[str] = []
        failed: list[dict[str, str]] = []
        for target, result in zip(targets, results, strict=True):
            if result.error is not None:
                failed.append({"value": target.value, "reason": client.scrub(result.error)})
                continue
            if result.not_found:
                not_found.append(target.value)
            else:
                reports.append(_virustotal_summary(result))
            document = docs.virustotal_document(result, target, self.case)
            doc_id = docs.enrichment_id("virustotal", target.value)
            self._add(target, doc_id, document, docs.virustotal_entry(result, target))
        if failed:
            logger.warning(
                "VirusTotal: %s not looked up (listed in summary.json)",
                plural(len(failed), "indicator"),
            )
        self.outcome.summary["virustotal"] = {
            "indicators": len(targets),
            "reports": reports,
            "not_found": not_found,
            "not_looked_up": failed,
        }

    def _geoip(self, databases: GeoIpDatabases, targets: list[Target]) -> None:
        found: list[dict[str, Any]] = []
        for target in targets:
            result = databases.lookup(target.value)
            if result.found:
                found.append(_geoip_summary(result))
            document = docs.geoip_document(result, target, self.case, databases.names)
            doc_id = docs.enrichment_id("geoip", target.value)
            self._add(target, doc_id, document, docs.geoip_entry(result, target))
        self.outcome.summary["geoip"] = {
            "databases": databases.names,
            "ips": len(targets),
            "found": found,
        }


def _target(finding: Finding, value: str, kind: IndicatorType, role: str) -> Target:
    message_ids = [ref.doc_id for ref in finding.messages[:MAX_MESSAGE_REFS]]
    return Target(value, kind, role, finding.first_seen, [finding.doc_id], message_ids)


def tell_age(finding: Finding, record: WhoisRecord, age: int | None) -> None:
    """Add the WHOIS record to a lookalike-domain finding: its age at the first message
    in the reason and evidence, and critical severity when the domain is young."""
    created = record.creation.value
    finding.evidence["whois"] = {
        "registrar": record.registrar,
        "creation_date": created.isoformat() if created else None,
        "creation_date_raw": list(record.creation.raw),
        "creation_date_state": "no record" if record.not_found else record.creation.state(),
        "age_days_at_first_message": age,
        "young": age is not None and 0 <= age <= YOUNG_DOMAIN_DAYS,
    }
    if record.not_found:
        finding.reason += "; WHOIS holds no record of it (not registered, or deleted)"
    elif created is None:
        state = record.creation.state()
        if state == "not a date":
            state += f" ({', '.join(record.creation.unparsed)})"
        finding.reason += f"; WHOIS creation date {state}"
    elif age is None:
        finding.reason += f"; registered {created.date().isoformat()}"
    elif age < 0:
        finding.reason += (
            f"; registered {created.date().isoformat()}, {plural(-age, 'day')} after its "
            "first message (registered again since?)"
        )
    elif age <= YOUNG_DOMAIN_DAYS:
        finding.severity = "critical"
        finding.reason += (
            f"; registered {created.date().isoformat()}, only {plural(age, 'day')} before "
            "its first message"
        )
    else:
        finding.reason += (
            f"; registered {created.date().isoformat()}, {plural(age, 'day')} before its "
            "first message"
        )


def _whois_summary(record: WhoisRecord, age: int | None) -> dict[str, Any]:
    created = record.creation.value
    return {
        "domain": record.domain,
        "not_found": record.not_found,
        "creation_date": created.isoformat() if created else None,
        "creation_date_state": "no record" if record.not_found else record.creation.state(),
        "age_days_at_first_message": age,
        "registrar": record.registrar,
        "redacted": list(record.redacted),
    }


def _virustotal_summary(result: VirusTotalResult) -> dict[str, Any]:
    summary = result.summary()
    stats = result.stats()
    return {
        "indicator": result.value,
        "type": result.kind,
        "malicious": stats.get("malicious", 0),
        "suspicious": stats.get("suspicious", 0),
        "engines": sum(stats.values()),
        "reputation": summary["reputation"],
        "as_owner": summary["as_owner"],
        "country": summary["country"],
    }


def _geoip_summary(result: GeoResult) -> dict[str, Any]:
    return {
        "ip": result.ip,
        "country_iso_code": result.country_iso_code,
        "city_name": result.city_name,
        "asn": result.asn,
        "as_organization": result.as_organization,
    }
