"""The analysis run: readers -> detections -> ECS mapping -> case folder.

Records stream through one at a time: each is shown to every rule, mapped to its ECS
document and written before the next is read, so memory does not grow with the size of
the evidence (the rules keep only small references).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inbec_export import ECS_VERSION, TOOL_NAME, __version__
from inbec_export.case import CaseContext
from inbec_export.detections import RuleSet, rules, subject_match_row
from inbec_export.ecs.documents import finding_document
from inbec_export.ecs.timeline import finding_event
from inbec_export.enrichment import Enricher, EnrichmentConfig
from inbec_export.model import Finding, ItemFailure, MessageRecord, NonMailItem
from inbec_export.prepare import MessagePreparer, PreparedMessage, map_message
from inbec_export.readers import FileOpened, FileSkipped, iter_evidence
from inbec_export.sinks.case_folder import CaseFolder
from inbec_export.sinks.report import TimelineCounts, hour_of, write_report

logger = logging.getLogger(__name__)

#: Failures listed in ``summary.json`` itself; all of them are in ``failures.ndjson``.
SUMMARY_FAILURES_SHOWN = 1000

#: Critical and high findings listed in ``summary.json`` (all are in findings.ndjson).
SUMMARY_KEY_FINDINGS = 50

_SEVERITY_ORDER = {"critical": 0, "high": 1, "medium": 2, "low": 3}

#: Called with ``(event, detail)`` as the run goes: "file", "message", "failure".
ProgressCallback = Callable[[str, str], None]


@dataclass
class EvidenceStats:
    """What one evidence file gave."""

    path: str
    format: str
    size: int
    sha256: str
    messages: int = 0
    non_mail_items: int = 0
    failures: int = 0
    failed_whole_file: bool = False


@dataclass
class RunStats:
    """Counts of one run, turned into ``summary.json`` at the end."""

    evidence: dict[str, EvidenceStats] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failures: list[ItemFailure] = field(default_factory=list)
    failure_count: int = 0
    non_mail: Counter[str] = field(default_factory=Counter)
    messages_read: int = 0
    messages_written: int = 0
    findings_by_rule: Counter[str] = field(default_factory=Counter)
    findings_by_severity: Counter[str] = field(default_factory=Counter)
    #: Lookalike-domain findings (one per domain: few) for the summary's table.
    lookalikes: list[Finding] = field(default_factory=list)
    #: Critical and high findings, trimmed to the first SUMMARY_KEY_FINDINGS as they come.
    key_findings: list[Finding] = field(default_factory=list)

    def count_finding(self, finding: Finding) -> None:
        """Count a finding, keeping only what the summary lists."""
        self.findings_by_rule[finding.rule_id] += 1
        self.findings_by_severity[finding.severity] += 1
        if finding.rule_id == "lookalike-domain":
            self.lookalikes.append(finding)
        if finding.severity in {"critical", "high"}:
            self.key_findings.append(finding)
            if len(self.key_findings) > 4 * SUMMARY_KEY_FINDINGS:
                self.key_findings = _ordered(self.key_findings)[:SUMMARY_KEY_FINDINGS]

    subject_matches: int = 0
    #: The messages written, per UTC hour of their ``@timestamp``, for the report.
    message_hours: TimelineCounts = field(default_factory=TimelineCounts)
    #: What the enrichment sources found and could not look up (None: no enrichment).
    enrichment: dict[str, Any] | None = None


def analyze(
    inputs: Iterable[Path],
    case: CaseContext,
    out_dir: Path,
    progress: ProgressCallback | None = None,
    enrichment: EnrichmentConfig | None = None,
    workers: int = 1,
) -> dict[str, Any]:
    """Read ``inputs``, run every rule, and write the case folder ``out_dir``.

    Args:
        enrichment: the lookup sources to ask at the end of the run (none by default:
            then the run opens no network connection).
        workers: evidence files read at the same time, in worker processes. The rules
            still see every message in input order, so the case folder is the same
            byte for byte whatever the number.

    Returns:
        The summary that was written to ``summary.json``.
    """
    notify = progress or (lambda _event, _detail: None)
    stats = RunStats()
    # The per-message rules and the documents (the preparer) may run where a message is
    # read; the rules that span messages run here, in input order.
    preparer = MessagePreparer(case)
    spanning = RuleSet(case, [rule for rule in rules() if not rule.per_message])
    enricher = Enricher(enrichment, case, out_dir) if enrichment and enrichment.enabled else None
    folder = CaseFolder(out_dir)
    try:
        # With one worker, the PST reader's child reads and this process does the rest,
        # but for what the child prepares while this process is behind. With more, the
        # workers also prepare what they read when there are processors to spare for
        # them (see ``prepares_in_workers``).
        where_read = workers == 1 or prepares_in_workers(workers)
        prepare = preparer if where_read else None
        for item in iter_evidence(inputs, workers, prepare, own_case=out_dir):
            # Records that arrive as read are prepared here.
            event = preparer(item) if isinstance(item, MessageRecord) else item
            if isinstance(event, PreparedMessage):
                _handle_message(event, case, spanning, folder, stats, enricher)
                notify("message", event.record.evidence_path)
            elif isinstance(event, FileOpened):
                ev = event.evidence
                stats.evidence[ev.path] = EvidenceStats(ev.path, ev.format, ev.size, ev.sha256)
                notify("file", ev.path)
            elif isinstance(event, ItemFailure):
                _handle_failure(event, folder, stats)
                notify("failure", event.line())
            elif isinstance(event, NonMailItem):
                stats.non_mail[event.message_class] += 1
                if event.evidence_path in stats.evidence:
                    stats.evidence[event.evidence_path].non_mail_items += 1
            elif isinstance(event, FileSkipped):
                stats.skipped.append((event.path, event.reason))
        finished: Iterable[Finding] = spanning.finish()
        if enricher is not None:
            finished = enricher.run(list(finished))
        for finding in finished:
            _write_finding(finding, case, folder, stats, enricher)
        if enricher is not None:
            _write_enrichment(enricher, folder, stats)
    except BaseException:
        folder.abort()
        raise
    finally:
        spanning.close()
        if enricher is not None:
            enricher.close()
    summary = build_summary(case, stats)
    folder.close(summary, write_subject_matches=case.subject_pattern is not None)
    write_report(out_dir, stats.message_hours)
    return summary


def prepares_in_workers(workers: int) -> bool:
    """True when ``--workers`` processes should also prepare the messages they read
    (per-message rules, documents, timeline events), not just read them.

    Preparing where a message is read keeps this process light, which pays when there
    are more processors than workers: this process then has one of its own, and would
    otherwise be the one all workers wait for. When the workers already take every
    processor, the work is shared anyway and less of it wins: the prepared message is
    larger to pickle and unpickle than the record (measured on two cores with two
    workers: 10% faster when this process prepares).
    """
    from inbec_export.readers.parallel import default_workers

    return workers > 1 and default_workers() > workers


def _handle_message(
    prepared: PreparedMessage,
    case: CaseContext,
    spanning: RuleSet,
    folder: CaseFolder,
    stats: RunStats,
    enricher: Enricher | None = None,
) -> None:
    record = prepared.record
    stats.messages_read += 1
    if record.evidence_path in stats.evidence:
        stats.evidence[record.evidence_path].messages += 1
    late = spanning.observe(record)
    if late:
        # A rule that spans messages raised a finding at once: the document must name it.
        prepared = map_message(record, case, prepared.findings + late)
    if prepared.document is None or prepared.events is None:
        where, item, error = record.evidence_path, record.item_id, prepared.error
        logger.warning("%s [%s]: not mapped: %s", where, item, error)
        _handle_failure(ItemFailure(where, item, f"not mapped to ECS: {error}"), folder, stats)
        return
    folder.write_message_json(record.doc_id, prepared.document)
    folder.write_event_lines(prepared.events)
    stats.messages_written += 1
    stats.message_hours.count_message(hour_of(record.timestamp))
    if enricher is not None:
        enricher.observe(record, prepared.rule_ids)
    for finding in prepared.findings:
        _write_finding(finding, case, folder, stats)
    for finding in prepared.findings:
        if finding.rule_id == "subject-match":
            stats.subject_matches += 1
            folder.add_subject_match(subject_match_row(finding))


def _write_finding(
    finding: Finding,
    case: CaseContext,
    folder: CaseFolder,
    stats: RunStats,
    enricher: Enricher | None = None,
) -> None:
    document = finding_document(finding, case)
    entries = enricher.entries_for(finding) if enricher is not None else []
    if entries:
        document.setdefault("threat", {})["enrichments"] = entries
    folder.write_finding(finding, document)
    event = finding_event(finding)
    if event is not None:
        folder.write_events([event])
    stats.count_finding(finding)


def _write_enrichment(enricher: Enricher, folder: CaseFolder, stats: RunStats) -> None:
    """Write the enrichment documents beside the findings, and their timeline events."""
    for doc_id, document in enricher.outcome.documents:
        folder.write_document(doc_id, document)
    folder.write_events(enricher.outcome.events)
    stats.enrichment = enricher.outcome.summary


def _handle_failure(failure: ItemFailure, folder: CaseFolder, stats: RunStats) -> None:
    logger.warning("%s", failure.line())
    folder.write_failure(failure)
    stats.failure_count += 1
    if len(stats.failures) < SUMMARY_FAILURES_SHOWN:
        stats.failures.append(failure)
    evidence = stats.evidence.get(failure.evidence_path)
    if evidence is not None:
        evidence.failures += 1
        evidence.failed_whole_file = evidence.failed_whole_file or failure.item is None


def _ordered(findings: list[Finding]) -> list[Finding]:
    """Most severe first, then by time, rule and key (a stable, deterministic order)."""

    def order(f: Finding) -> tuple[int, str, str, str]:
        when = f.timestamp.isoformat() if f.timestamp else ""
        return (_SEVERITY_ORDER[f.severity], when, f.rule_id, f.key)

    return sorted(findings, key=order)


def build_summary(case: CaseContext, stats: RunStats) -> dict[str, Any]:
    """The content of ``summary.json`` (deterministic: no run times, sorted lists)."""
    by_rule = stats.findings_by_rule
    by_severity = stats.findings_by_severity
    failed_files = sorted(
        {f.evidence_path for f in stats.failures if f.item is None}
        | {e.path for e in stats.evidence.values() if e.failed_whole_file}
    )
    lookalikes = [
        {
            "domain": f.evidence.get("domain"),
            # The names seen under it: for a subdomain lookalike, the one that shows the
            # legitimate name (acme-corp.com.evil.net under evil.net).
            "hosts": f.evidence.get("hosts"),
            "imitates": f.evidence.get("legit_domain"),
            "techniques": f.evidence.get("techniques"),
            "message_count": f.evidence.get("message_count"),
            "first_seen": f.first_seen.isoformat() if f.first_seen else None,
        }
        for f in stats.lookalikes
    ]
    key_findings = _ordered(stats.key_findings)
    enrichment = {} if stats.enrichment is None else {"enrichment": stats.enrichment}
    return {
        **enrichment,
        "tool": {"name": TOOL_NAME, "version": __version__, "ecs_version": ECS_VERSION},
        "case": {
            "id": case.case_id,
            "legit_domains": list(case.legit_domains),
            "allowlist": list(case.allowlist),
            "subject_pattern": case.subject_pattern.pattern if case.subject_pattern else None,
        },
        "totals": {
            "evidence_files": len(stats.evidence),
            "files_skipped": len(stats.skipped),
            "files_failed": len(failed_files),
            "messages_read": stats.messages_read,
            "messages_written": stats.messages_written,
            "items_failed": stats.failure_count,
            "non_mail_items": sum(stats.non_mail.values()),
            "findings": sum(by_rule.values()),
            "subject_matches": stats.subject_matches,
        },
        "evidence": [
            {
                "path": e.path,
                "format": e.format,
                "size": e.size,
                "sha256": e.sha256,
                "messages": e.messages,
                "non_mail_items": e.non_mail_items,
                "failures": e.failures,
            }
            for e in sorted(stats.evidence.values(), key=lambda e: e.path)
        ],
        "non_mail_items": dict(sorted(stats.non_mail.items())),
        "skipped_files": [{"path": p, "reason": r} for p, r in sorted(stats.skipped)],
        "failed_files": failed_files,
        "failures": [
            {"file": f.evidence_path, "item": f.item, "reason": f.reason} for f in stats.failures
        ],
        "findings_by_rule": dict(sorted(by_rule.items())),
        "findings_by_severity": dict(sorted(by_severity.items())),
        "lookalike_domains": sorted(lookalikes, key=lambda d: str(d["domain"])),
        "key_findings": [
            {
                "rule_id": f.rule_id,
                "severity": f.severity,
                "timestamp": f.timestamp.isoformat() if f.timestamp else None,
                "reason": f.reason,
                "doc_id": f.doc_id,
            }
            for f in key_findings[:SUMMARY_KEY_FINDINGS]
        ],
    }
