"""Index templates for each document kind, mapping every field the tool writes.

The templates are composable index templates that Elasticsearch 8/9 and OpenSearch 2
both accept. Mappings are ``dynamic: strict``: a field the code writes but the template
does not map is rejected by the server, and the tests check that none exists. Types are
kept to those both servers share (no ``wildcard``, ``match_only_text`` or ``flattened``);
free-form finding evidence is stored but not indexed (``enabled: false``).

The files in the repository's ``mappings/`` folder are generated from this module
(``inbec mappings DIR``); a test keeps them equal.
"""

from __future__ import annotations

from typing import Any

#: Bumped whenever a mapping changes, so an installer can replace older templates.
TEMPLATE_VERSION = 2

#: Default prefix of index names and template names.
DEFAULT_PREFIX = "inbec"

#: Document kinds and the index name part of each.
KINDS = ("messages", "findings")

Mapping = dict[str, Any]

KEYWORD: Mapping = {"type": "keyword", "ignore_above": 1024}
LONG_KEYWORD: Mapping = {"type": "keyword", "ignore_above": 8191}
DATE: Mapping = {"type": "date"}
IP: Mapping = {"type": "ip"}
LONG: Mapping = {"type": "long"}
FLOAT: Mapping = {"type": "float"}
BOOLEAN: Mapping = {"type": "boolean"}
TEXT: Mapping = {"type": "text"}
KEYWORD_AND_TEXT: Mapping = {**KEYWORD, "fields": {"text": TEXT}}


def obj(**properties: Mapping) -> Mapping:
    """An object field with the given sub-fields."""
    return {"properties": properties}


def _common() -> dict[str, Mapping]:
    return {
        "@timestamp": DATE,
        "ecs": obj(version=KEYWORD),
        "message": TEXT,
        "related": obj(ip=IP, hosts=KEYWORD, hash=KEYWORD),
    }


def _event(**extra: Mapping) -> Mapping:
    return obj(
        kind=KEYWORD,
        category=KEYWORD,
        type=KEYWORD,
        dataset=KEYWORD,
        module=KEYWORD,
        id=KEYWORD,
        **extra,
    )


def _address() -> Mapping:
    return obj(address=KEYWORD)


def message_mapping() -> Mapping:
    """The mapping of message documents (``event.dataset: inbec.message``)."""
    auth_method = obj(result=KEYWORD, domain=KEYWORD)
    properties = {
        **_common(),
        "event": _event(),
        "email": obj(
            **{"from": _address()},
            sender=_address(),
            reply_to=_address(),
            to=_address(),
            cc=_address(),
            bcc=_address(),
            subject=KEYWORD_AND_TEXT,
            message_id=LONG_KEYWORD,
            origination_timestamp=DATE,
            delivery_timestamp=DATE,
            x_mailer=KEYWORD,
            content_type=KEYWORD,
            local_id=KEYWORD,
            attachments={
                "type": "nested",
                "properties": {
                    "file": obj(
                        name=KEYWORD,
                        mime_type=KEYWORD,
                        size=LONG,
                        hash=obj(sha256=KEYWORD),
                    )
                },
            },
        ),
        "source": obj(ip=IP),
        "inbec": obj(
            case=obj(id=KEYWORD),
            tool=obj(version=KEYWORD),
            evidence=obj(
                path=LONG_KEYWORD,
                sha256=KEYWORD,
                format=KEYWORD,
                folder=LONG_KEYWORD,
                item_id=KEYWORD,
                parent_item_id=KEYWORD,
            ),
            message_class=KEYWORD,
            has_transport_headers=BOOLEAN,
            subject_raw=LONG_KEYWORD,
            subject_decode_error=KEYWORD,
            date_raw=KEYWORD,
            submit_timestamp=DATE,
            display_names=obj(
                **{"from": KEYWORD_AND_TEXT},
                sender=KEYWORD_AND_TEXT,
                reply_to=KEYWORD_AND_TEXT,
                return_path=KEYWORD_AND_TEXT,
                to=KEYWORD_AND_TEXT,
                cc=KEYWORD_AND_TEXT,
                bcc=KEYWORD_AND_TEXT,
            ),
            return_path=_address(),
            sender_type=KEYWORD,
            from_domain=KEYWORD,
            reply_to_domain=KEYWORD,
            in_reply_to=LONG_KEYWORD,
            references=LONG_KEYWORD,
            thread=obj(index=LONG_KEYWORD, topic=KEYWORD_AND_TEXT, conversation_index=LONG_KEYWORD),
            originating_ip=IP,
            hops=obj(from_host=KEYWORD, by_host=KEYWORD, ip=IP, timestamp=DATE, protocol=KEYWORD),
            auth=obj(
                spf=auth_method,
                dkim=auth_method,
                dmarc=auth_method,
                compauth=auth_method,
                arc=auth_method,
                results=obj(
                    method=KEYWORD,
                    result=KEYWORD,
                    domain=KEYWORD,
                    source=KEYWORD,
                    authserv_id=KEYWORD,
                    reason=KEYWORD,
                ),
            ),
            lookalike=obj(
                domains=KEYWORD, legit_domains=KEYWORD, techniques=KEYWORD, sender=BOOLEAN
            ),
            attachment=obj(names=KEYWORD, count=LONG),
            finding=obj(rule_ids=KEYWORD),
            body=TEXT,
            body_truncated=BOOLEAN,
            warnings=KEYWORD_AND_TEXT,
        ),
    }
    return {"dynamic": "strict", "properties": properties}


def finding_mapping() -> Mapping:
    """The mapping of finding documents (``event.kind: alert``) and of the enrichment
    documents written beside them (``event.kind: enrichment``)."""
    properties = {
        **_common(),
        "event": _event(
            severity=LONG,
            risk_score=FLOAT,
            reason=KEYWORD_AND_TEXT,
            start=DATE,
            end=DATE,
            provider=KEYWORD,
        ),
        "rule": obj(id=KEYWORD, name=KEYWORD, ruleset=KEYWORD, category=KEYWORD),
        "threat": obj(
            indicator=obj(
                type=KEYWORD,
                description=TEXT,
                url=obj(domain=KEYWORD),
                email=obj(address=KEYWORD),
                ip=IP,
            ),
            enrichments=_threat_enrichments(),
        ),
        "email": obj(
            **{"from": _address()},
            to=_address(),
            message_id=LONG_KEYWORD,
            subject=KEYWORD_AND_TEXT,
        ),
        "source": obj(ip=IP),
        "inbec": obj(
            case=obj(id=KEYWORD),
            tool=obj(version=KEYWORD),
            finding=obj(
                key=LONG_KEYWORD,
                severity=KEYWORD,
                message_count=LONG,
                message_doc_ids=KEYWORD,
                messages=obj(
                    doc_id=KEYWORD,
                    message_id=LONG_KEYWORD,
                    subject=KEYWORD,
                    timestamp=DATE,
                    sender=KEYWORD,
                    recipients=KEYWORD,
                    source_ip=IP,
                    evidence_path=LONG_KEYWORD,
                    item_id=KEYWORD,
                ),
                indicators=obj(type=KEYWORD, value=KEYWORD),
                ibans=KEYWORD,
                # Flat keyword copies of evidence values, for dashboards to chart.
                lookalike=obj(domain=KEYWORD, legit_domain=KEYWORD, techniques=KEYWORD),
                seen_in=KEYWORD,
                auth_failures=KEYWORD,
                evidence={"type": "object", "enabled": False},
            ),
            **_enrichment_details(),
        ),
    }
    return {"dynamic": "strict", "properties": properties}


def _threat_enrichments() -> Mapping:
    """ECS ``threat.enrichments``: what a lookup said about an indicator (nested, so each
    entry's fields stay together)."""
    return {
        "type": "nested",
        "properties": {
            "indicator": obj(
                type=KEYWORD,
                provider=KEYWORD,
                description=TEXT,
                reference=KEYWORD,
                scanner_stats=LONG,
                modified_at=DATE,
                url=obj(domain=KEYWORD),
                ip=IP,
                geo=obj(country_iso_code=KEYWORD, country_name=KEYWORD, city_name=KEYWORD),
                **{"as": obj(number=LONG, organization=obj(name=KEYWORD))},
            ),
            "matched": obj(atomic=KEYWORD, field=KEYWORD, type=KEYWORD, id=KEYWORD),
        },
    }


def _enrichment_details() -> dict[str, Mapping]:
    """``inbec.*`` of enrichment documents (``event.kind: enrichment``), kept in the
    findings index beside the alerts they explain."""
    dates = {f"{kind}_date": DATE for kind in ("creation", "updated", "expiration")}
    raw_dates = {f"{kind}_date_raw": KEYWORD for kind in ("creation", "updated", "expiration")}
    verdicts = ("harmless", "malicious", "suspicious", "timeout", "undetected")
    return {
        "enrichment": obj(
            source=KEYWORD,
            indicator=KEYWORD,
            indicator_type=KEYWORD,
            role=KEYWORD,
            retrieved=DATE,
            finding_doc_ids=KEYWORD,
            message_doc_ids=KEYWORD,
        ),
        "whois": obj(
            domain=KEYWORD,
            server=KEYWORD,
            not_found=BOOLEAN,
            registrar=KEYWORD,
            name_servers=KEYWORD,
            status=KEYWORD,
            **dates,
            **raw_dates,
            unparsed_dates=KEYWORD,
            registrant=obj(name=KEYWORD, organization=KEYWORD, country=KEYWORD),
            redacted=KEYWORD,
            missing=KEYWORD,
            age_days=LONG,
            first_message=DATE,
        ),
        "virustotal": obj(
            type=KEYWORD,
            id=KEYWORD,
            not_found=BOOLEAN,
            last_analysis_stats=obj(**{verdict: LONG for verdict in verdicts}),
            reputation=LONG,
            as_owner=KEYWORD,
            asn=LONG,
            country=KEYWORD,
            network=KEYWORD,
            registrar=KEYWORD,
            creation_date=DATE,
            last_analysis_date=DATE,
            categories=KEYWORD,
            tags=KEYWORD,
        ),
        "geoip": obj(
            country_iso_code=KEYWORD,
            country_name=KEYWORD,
            city_name=KEYWORD,
            asn=LONG,
            as_organization=KEYWORD,
            databases=KEYWORD,
        ),
    }


def index_pattern(kind: str, prefix: str = DEFAULT_PREFIX) -> str:
    """The index pattern a template applies to: ``<prefix>-<kind>-*``."""
    return f"{prefix}-{kind}-*"


def index_templates(prefix: str = DEFAULT_PREFIX) -> dict[str, Mapping]:
    """The composable index template of each document kind."""
    mappings = {"messages": message_mapping(), "findings": finding_mapping()}
    return {
        kind: {
            "index_patterns": [index_pattern(kind, prefix)],
            "priority": 200,
            "version": TEMPLATE_VERSION,
            "_meta": {"managed_by": "inbec-export", "kind": kind},
            "template": {
                "settings": {
                    "index": {"number_of_replicas": 0, "mapping": {"total_fields": {"limit": 2000}}}
                },
                "mappings": mappings[kind],
            },
        }
        for kind in KINDS
    }


def mapped_fields(mapping: Mapping, prefix: str = "") -> dict[str, str]:
    """Every field path of ``mapping`` with its type (objects not enabled count as leaves)."""
    fields: dict[str, str] = {}
    for name, spec in mapping.get("properties", {}).items():
        path = f"{prefix}{name}"
        if "properties" in spec:
            fields.update(mapped_fields(spec, path + "."))
        else:
            fields[path] = spec.get("type", "object")
    return fields


def document_fields(document: Any, prefix: str = "") -> set[str]:
    """Every field path a document sets (lists of objects are walked, as the servers do)."""
    paths: set[str] = set()
    if isinstance(document, dict):
        for key, value in document.items():
            paths |= document_fields(value, f"{prefix}{key}.")
    elif isinstance(document, list):
        for item in document:
            paths |= document_fields(item, prefix)
    else:
        paths.add(prefix.rstrip("."))
    return paths


def unmapped_fields(document: Any, mapping: Mapping) -> set[str]:
    """The fields of ``document`` that ``mapping`` does not map (a strict mapping would
    reject the document for them); fields inside a stored-only object are mapped."""
    fields = mapped_fields(mapping)

    def covered(path: str) -> bool:
        if path in fields:
            return True
        parts = path.split(".")
        return any(fields.get(".".join(parts[:i])) == "object" for i in range(1, len(parts)))

    return {path for path in document_fields(document) if not covered(path)}
