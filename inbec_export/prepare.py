"""The per-message stage of the analysis: what one message needs and no other does.

For each record, :class:`MessagePreparer` runs the rules that look at one message only
(:attr:`~inbec_export.detections.base.Rule.per_message`), maps the record to its ECS
document and timeline events, and serialises them to the JSON text the case folder
writes. None of it depends on the order of the messages, so with ``--workers`` above 1
it runs in the worker that read the message, while the analysis process runs the rules
that span messages and writes the case folder in input order. With one worker the
analysis process prepares each message itself, but for those the PST reader's child
prepares while the analysis process is behind (see
:func:`~inbec_export.readers.isolation.worker_session`): the two share the work, whichever
is the slower on the machine. Readers know nothing of this: they are handed a callable
and apply it to each record (see :func:`~inbec_export.readers.iter_evidence`).

The result is the same whichever process prepares a message.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from inbec_export.case import CaseContext
from inbec_export.detections.base import Rule, rules
from inbec_export.detections.runner import RuleSet
from inbec_export.ecs.documents import message_document
from inbec_export.ecs.timeline import message_events
from inbec_export.model import Finding, MessageRecord, pickled_by_fields
from inbec_export.sinks.case_folder import document_json

logger = logging.getLogger(__name__)


@pickled_by_fields
@dataclass(slots=True)
class PreparedMessage:
    """A record with the per-message rules' findings and its serialised documents.

    ``document`` is the message's ECS document as one line of JSON and ``events`` its
    timeline events, one line each; both are None when mapping failed, and ``error``
    then says why (the message is listed as failed, not written).
    """

    record: MessageRecord
    findings: list[Finding] = field(default_factory=list)
    rule_ids: list[str] = field(default_factory=list)
    document: str | None = None
    events: list[str] | None = None
    error: str | None = None


class MessagePreparer:
    """Callable that turns a record into a :class:`PreparedMessage` (picklable, so a
    reading process can be given one)."""

    def __init__(self, case: CaseContext, rule_types: list[type[Rule]] | None = None) -> None:
        chosen = rules() if rule_types is None else rule_types
        self.case = case
        self.rule_types = [rule for rule in chosen if rule.per_message]
        self._rules: RuleSet | None = None

    def __getstate__(self) -> dict[str, object]:
        # Rule instances are made again where the preparer runs.
        return {"case": self.case, "rule_types": self.rule_types}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.case = state["case"]  # type: ignore[assignment]
        self.rule_types = state["rule_types"]  # type: ignore[assignment]
        self._rules = None

    def __call__(self, record: MessageRecord) -> PreparedMessage:
        if self._rules is None:
            self._rules = RuleSet(self.case, self.rule_types)
        findings = self._rules.observe(record)
        return map_message(record, self.case, findings)


def map_message(
    record: MessageRecord, case: CaseContext, findings: list[Finding]
) -> PreparedMessage:
    """The documents of ``record``, given every finding raised on it as it streamed."""
    rule_ids = sorted({finding.rule_id for finding in findings})
    try:
        document = document_json(message_document(record, case, rule_ids))
        events = [document_json(event) for event in message_events(record, rule_ids)]
    except Exception as exc:  # one bad record costs that record, listed with its reason
        return PreparedMessage(record, findings, rule_ids, error=str(exc))
    return PreparedMessage(record, findings, rule_ids, document, events)
