"""Rule ``subject-match``: messages whose subject matches the case's subject pattern.

Active only when the case sets ``subject_pattern``; the pattern is searched for in the
decoded subject (RFC 2047) with a time limit per subject, so a pattern that backtracks
catastrophically on a hostile subject costs that subject, not the run. One low-severity
finding per matching message, raised as it streams past. Messages without a Subject
field are not matched; an empty subject is matched as the empty string.

The evidence carries the values of a ``subject-matches.csv`` row (``date``, ``from``,
``to``, ``subject``, ``message_id``, ``doc_id``); :func:`subject_match_row` turns a
finding into that row, in the order of :data:`SUBJECT_MATCH_COLUMNS`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from inbec_export.detections._common import iso, sender_of, when
from inbec_export.detections.base import Rule, register
from inbec_export.model import Finding, MessageRecord, MessageRef

logger = logging.getLogger(__name__)

#: Seconds one subject may take to match; past that it is reported and not matched.
MATCH_TIMEOUT_SECONDS = 1.0

#: Columns of a subject-match row, in order.
SUBJECT_MATCH_COLUMNS: tuple[str, ...] = ("date", "from", "to", "subject", "message_id", "doc_id")


@register
class SubjectMatchRule(Rule):
    """One finding per message whose subject matches the case's pattern."""

    id = "subject-match"
    per_message = True
    name = "Subject matches the case pattern"
    severity = "low"
    description = "The subject matches the pattern the analyst gave for this case."

    def observe(self, record: MessageRecord) -> Iterable[Finding]:
        pattern = self.case.subject_pattern
        if pattern is None or record.subject is None:
            return ()
        try:
            found = pattern.search(record.subject, timeout=MATCH_TIMEOUT_SECONDS)
        except TimeoutError:
            warning = (
                f"--subject-pattern took over {MATCH_TIMEOUT_SECONDS} s on this subject; "
                "not matched (simplify the pattern)"
            )
            logger.warning("%s [%s]: %s", record.evidence_path, record.item_id, warning)
            record.warnings.append(warning)
            return ()
        if found is None:
            return ()
        sender = sender_of(record)
        recipients = [address.address for address in record.to if address.address]
        reason = (
            f"Subject {record.subject!r} matches {pattern.pattern!r} (matched "
            f"{found.group(0)!r}); from {sender.address if sender else 'an unknown sender'} "
            f"at {when(record.timestamp)}"
        )
        evidence: dict[str, object] = {
            "date": iso(record.timestamp),
            "from": sender.address if sender else None,
            "to": recipients,
            "subject": record.subject,
            "message_id": record.message_id,
            "doc_id": record.doc_id,
            "pattern": pattern.pattern,
            "matched": found.group(0),
        }
        return [
            Finding(
                rule_id=self.id,
                rule_name=self.name,
                severity="low",
                reason=reason,
                key=record.doc_id,
                evidence=evidence,
                messages=[MessageRef.of(record)],
                first_seen=record.timestamp,
                last_seen=record.timestamp,
            )
        ]


def subject_match_row(finding: Finding) -> tuple[str, ...]:
    """The ``subject-matches.csv`` row of a ``subject-match`` finding.

    Columns are :data:`SUBJECT_MATCH_COLUMNS`; recipients are joined with ``"; "`` and
    missing values are empty strings. Spreadsheet escaping is the sink's job.

    Raises:
        ValueError: ``finding`` is not a ``subject-match`` finding.
    """
    if finding.rule_id != SubjectMatchRule.id:
        raise ValueError(f"not a {SubjectMatchRule.id} finding: {finding.rule_id}")
    evidence = finding.evidence
    row: list[str] = []
    for column in SUBJECT_MATCH_COLUMNS:
        value = evidence.get(column)
        if isinstance(value, list):
            row.append("; ".join(str(item) for item in value))
        else:
            row.append("" if value is None else str(value))
    return tuple(row)
