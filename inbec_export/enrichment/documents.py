"""Enrichment results as ECS documents, ``threat.enrichments`` entries and timeline events.

One enrichment document (``event.kind: enrichment``, ``event.dataset: inbec.enrichment``)
per source and indicator, written to ``findings.ndjson`` beside the alerts it explains, so
that the search export sends it to the findings index. Its id is derived from the source
and the indicator only: the same evidence and the same answers give the same documents.
The findings about an indicator carry the same entries under ``threat.enrichments``, with
``matched.id`` naming the enrichment document.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from inbec_export import ECS_VERSION, __version__
from inbec_export.case import CaseContext
from inbec_export.ecs.documents import iso
from inbec_export.ecs.timeline import Event, micros
from inbec_export.enrichment.geoip import GeoResult
from inbec_export.enrichment.virustotal import VirusTotalResult
from inbec_export.enrichment.whois import WhoisRecord
from inbec_export.model import stable_id

logger = logging.getLogger(__name__)

#: ``event.dataset`` of enrichment documents.
ENRICHMENT_DATASET = "inbec.enrichment"

#: The VirusTotal web page of an object, for ``threat.enrichments.indicator.reference``.
VT_GUI_URL = "https://www.virustotal.com/gui/{collection}/{value}"

#: The provider names of ``threat.enrichments.indicator.provider``.
PROVIDERS = {"whois": "WHOIS", "virustotal": "VirusTotal", "geoip": "MaxMind GeoIP"}

#: Verdict counts of VirusTotal's ``last_analysis_stats`` that documents keep (mapped).
VT_STATS = ("harmless", "malicious", "suspicious", "timeout", "undetected")

IndicatorType = Literal["domain-name", "ipv4-addr", "ipv6-addr"]
Document = dict[str, Any]


@dataclass
class Target:
    """An indicator to look up, why, and the findings and messages it comes from."""

    value: str
    type: IndicatorType
    role: str
    first_seen: datetime | None = None
    finding_doc_ids: list[str] = field(default_factory=list)
    message_doc_ids: list[str] = field(default_factory=list)

    @property
    def is_domain(self) -> bool:
        """True for a domain name, False for an IP address."""
        return self.type == "domain-name"


def enrichment_id(source: str, value: str) -> str:
    """The deterministic id of the enrichment document of ``value`` from ``source``."""
    return stable_id("enrichment", source, value)


def _prune(value: Any) -> Any:
    """Drop None, empty strings, lists and objects, recursively (as message documents do)."""
    if isinstance(value, dict):
        pruned = {k: _prune(v) for k, v in value.items()}
        return {k: v for k, v in pruned.items() if v not in (None, "", [], {})}
    if isinstance(value, list):
        return [v for v in (_prune(item) for item in value) if v not in (None, "", [], {})]
    return value


def _indicator(target: Target) -> dict[str, Any]:
    if target.is_domain:
        return {"type": target.type, "url": {"domain": target.value}}
    return {"type": target.type, "ip": target.value}


def enrichment_entry(source: str, target: Target, description: str, **extra: Any) -> Document:
    """One ``threat.enrichments`` entry: the indicator as the source describes it."""
    entry: Document = _prune(
        {
            "indicator": {
                **_indicator(target),
                "provider": PROVIDERS[source],
                "description": description,
                **extra,
            },
            "matched": {
                "atomic": target.value,
                "field": "threat.indicator.url.domain"
                if target.is_domain
                else "threat.indicator.ip",
                "type": "inbec_lookup",
                "id": enrichment_id(source, target.value),
            },
        }
    )
    return entry


def _document(
    source: str,
    target: Target,
    case: CaseContext,
    when: datetime | None,
    entry: Document,
    details: dict[str, Any],
    retrieved: str | None = None,
) -> Document:
    doc_id = enrichment_id(source, target.value)
    document: Document = {
        "@timestamp": iso(when),
        "ecs": {"version": ECS_VERSION},
        "event": {
            "kind": "enrichment",
            "category": ["threat"],
            "type": ["indicator"],
            "dataset": ENRICHMENT_DATASET,
            "module": "inbec",
            "provider": source,
            "id": doc_id,
        },
        "message": entry["indicator"]["description"],
        "threat": {"enrichments": [entry]},
        "related": {
            "hosts": [target.value] if target.is_domain else [],
            "ip": [] if target.is_domain else [target.value],
        },
        "inbec": {
            "case": {"id": case.case_id},
            "tool": {"version": __version__},
            "enrichment": {
                "source": source,
                "indicator": target.value,
                "indicator_type": target.type,
                "role": target.role,
                "retrieved": retrieved,
                "finding_doc_ids": target.finding_doc_ids,
                "message_doc_ids": target.message_doc_ids,
            },
            source: details,
        },
    }
    pruned: Document = _prune(document)
    return pruned


# --- WHOIS -----------------------------------------------------------------------------


def whois_line(record: WhoisRecord) -> str:
    """What the WHOIS record says, in one line (redacted and missing data said so)."""
    if record.not_found:
        return f"WHOIS: {record.domain} has no record (not registered, or deleted)"
    parts = [f"WHOIS: {record.domain}"]
    state = record.creation.state()
    if record.creation.value is not None:
        parts.append(f"created {record.creation.value.date().isoformat()}")
    elif state == "not a date":
        parts.append(f"creation date not a date ({', '.join(record.creation.unparsed)})")
    else:
        parts.append(f"creation date {state}")
    if record.registrar:
        parts.append(f"registrar {record.registrar}")
    else:
        parts.append(f"registrar {'redacted' if 'registrar' in record.redacted else 'missing'}")
    if record.name_servers:
        parts.append("name servers " + ", ".join(record.name_servers))
    if record.redacted:
        parts.append("redacted: " + ", ".join(record.redacted))
    return "; ".join(parts)


def whois_details(record: WhoisRecord, age_days: int | None, first: datetime | None) -> Document:
    """``inbec.whois`` of a document: the record, and the age at the first message."""
    details = record.as_dict()
    details["registrant"] = {
        key.removeprefix("registrant_"): value for key, value in details["registrant"].items()
    }
    return {**details, "age_days": age_days, "first_message": iso(first)}


def whois_document(
    record: WhoisRecord,
    target: Target,
    case: CaseContext,
    age_days: int | None,
    retrieved: str | None,
) -> Document:
    """The enrichment document of a WHOIS record."""
    entry = whois_entry(record, target)
    details = whois_details(record, age_days, target.first_seen)
    when = record.creation.value or target.first_seen
    return _document("whois", target, case, when, entry, details, retrieved)


def whois_entry(record: WhoisRecord, target: Target) -> Document:
    """The ``threat.enrichments`` entry of a WHOIS record."""
    return enrichment_entry("whois", target, whois_line(record))


def whois_event(record: WhoisRecord, target: Target, age_days: int | None) -> Event | None:
    """The "domain created" timeline event, at the WHOIS creation date (None without one)."""
    created = record.creation.value
    if created is None:
        return None
    message = f"Domain {record.domain} registered"
    if record.registrar:
        message += f" (registrar {record.registrar})"
    if age_days is not None and target.first_seen is not None:
        message += f"; first used in a message {age_days} days later"
    event: Event = {
        "message": message,
        "datetime": created.isoformat(),
        "timestamp": micros(created),
        "timestamp_desc": "Domain registered (WHOIS creation date)",
        "data_type": "inbec:enrichment:whois",
        "inbec_doc_id": enrichment_id("whois", target.value),
        "domain": record.domain,
        "registrar": record.registrar or "",
        "whois_creation_raw": ", ".join(record.creation.raw),
    }
    if age_days is not None:
        event["domain_age_days"] = age_days
    return event


# --- VirusTotal ------------------------------------------------------------------------


def virustotal_line(result: VirusTotalResult) -> str:
    """What VirusTotal says about the object, in one line."""
    if result.not_found:
        return f"VirusTotal: {result.value} is not in VirusTotal"
    stats = result.stats()
    summary = result.summary()
    line = (
        f"VirusTotal: {result.value}: {stats.get('malicious', 0)} malicious, "
        f"{stats.get('suspicious', 0)} suspicious of {sum(stats.values())} engines"
    )
    if summary["reputation"] is not None:
        line += f"; reputation {summary['reputation']}"
    if summary["as_owner"]:
        asn = f"AS{summary['asn']} " if summary["asn"] else ""
        line += f"; {asn}{summary['as_owner']}"
    if summary["country"]:
        line += f"; country {summary['country']}"
    return line


def virustotal_entry(result: VirusTotalResult, target: Target) -> Document:
    """The ``threat.enrichments`` entry of a VirusTotal report."""
    summary = result.summary()
    stats = result.stats()
    collection = "domain" if target.is_domain else "ip-address"
    extra: dict[str, Any] = {
        "reference": VT_GUI_URL.format(collection=collection, value=target.value),
        "modified_at": summary["last_analysis_date"],
        "as": {"number": summary["asn"], "organization": {"name": summary["as_owner"]}},
        "geo": {"country_iso_code": summary["country"]},
    }
    if not result.not_found:
        extra["scanner_stats"] = stats.get("malicious", 0) + stats.get("suspicious", 0)
    return enrichment_entry("virustotal", target, virustotal_line(result), **extra)


def virustotal_document(result: VirusTotalResult, target: Target, case: CaseContext) -> Document:
    """The enrichment document of a VirusTotal report (or of its absence)."""
    details = result.summary()
    details["last_analysis_stats"] = {
        k: v for k, v in details["last_analysis_stats"].items() if k in VT_STATS
    }
    entry = virustotal_entry(result, target)
    return _document(
        "virustotal", target, case, target.first_seen, entry, details, result.retrieved
    )


# --- GeoIP -----------------------------------------------------------------------------


def geoip_line(result: GeoResult) -> str:
    """What the databases say about the address, in one line."""
    if not result.found:
        return f"GeoIP: {result.ip} is in none of the databases"
    parts = [f"GeoIP: {result.ip}"]
    place = ", ".join(p for p in (result.city_name, result.country_name) if p)
    if place or result.country_iso_code:
        parts.append(f"{place or result.country_iso_code} ({result.country_iso_code or '?'})")
    if result.asn is not None:
        parts.append(f"AS{result.asn} {result.as_organization or ''}".strip())
    return "; ".join(parts)


def geoip_entry(result: GeoResult, target: Target) -> Document:
    """The ``threat.enrichments`` entry of a GeoIP result."""
    return enrichment_entry(
        "geoip",
        target,
        geoip_line(result),
        geo={
            "country_iso_code": result.country_iso_code,
            "country_name": result.country_name,
            "city_name": result.city_name,
        },
        **{"as": {"number": result.asn, "organization": {"name": result.as_organization}}},
    )


def geoip_document(
    result: GeoResult, target: Target, case: CaseContext, databases: list[str]
) -> Document:
    """The enrichment document of a GeoIP result."""
    details = {
        "country_iso_code": result.country_iso_code,
        "country_name": result.country_name,
        "city_name": result.city_name,
        "asn": result.asn,
        "as_organization": result.as_organization,
        "databases": databases,
    }
    entry = geoip_entry(result, target)
    return _document("geoip", target, case, target.first_seen, entry, details)
