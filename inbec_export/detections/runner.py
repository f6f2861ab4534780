"""Run the detection rules over a stream of message records."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence

from inbec_export.case import CaseContext
from inbec_export.detections.base import Rule, rules
from inbec_export.errors import UsageError
from inbec_export.model import Finding, MessageRecord

logger = logging.getLogger(__name__)


class RuleSet:
    """One instance of each selected rule, fed the records one by one as they stream.

    Call :meth:`observe` for every record (the record can be written out and dropped right
    after; rules keep only small references), then :meth:`finish` once, and :meth:`close`
    when the run ends, whether it finished or not. A rule that raises
    is logged with the message it failed on and skipped for that message; the other rules
    go on, and the failure is listed in :attr:`errors`.
    """

    def __init__(self, case: CaseContext, rule_types: Iterable[type[Rule]] | None = None) -> None:
        self.case = case
        self.rules: list[Rule] = [
            rule(case) for rule in (rules() if rule_types is None else rule_types)
        ]
        self.errors: list[str] = []
        self.messages_seen = 0
        self._finished = False

    @classmethod
    def select(
        cls, case: CaseContext, only: Sequence[str] = (), skip: Sequence[str] = ()
    ) -> RuleSet:
        """The registered rules whose ids are in ``only`` (all when empty), minus ``skip``.

        Raises:
            UsageError: an id names no registered rule.
        """
        known = {rule.id: rule for rule in rules()}
        unknown = sorted((set(only) | set(skip)) - known.keys())
        if unknown:
            raise UsageError(
                f"unknown rule id(s) {', '.join(unknown)}; known rules: {', '.join(known)}"
            )
        chosen = [rule for rule in rules() if (not only or rule.id in only) and rule.id not in skip]
        return cls(case, chosen)

    @property
    def rule_ids(self) -> list[str]:
        """Ids of the rules in this set, in registration order."""
        return [rule.id for rule in self.rules]

    def observe(self, record: MessageRecord) -> list[Finding]:
        """Show ``record`` to every rule; return the findings about it raised at once."""
        if self._finished:
            raise RuntimeError("observe() after finish(): make a new RuleSet for a new run")
        self.messages_seen += 1
        findings: list[Finding] = []
        for rule in self.rules:
            try:
                findings.extend(rule.observe(record))
            except Exception as exc:  # one broken rule must not stop the case
                self._failed(rule, f"message {record.doc_id} ({record.item_id})", exc)
        return findings

    def finish(self) -> list[Finding]:
        """Ask every rule for the findings that needed the whole stream (call once)."""
        if self._finished:
            raise RuntimeError("finish() was already called on this RuleSet")
        self._finished = True
        findings: list[Finding] = []
        for rule in self.rules:
            try:
                findings.extend(rule.finish())
            except Exception as exc:  # keep the other rules' findings
                self._failed(rule, "finish", exc)
        logger.info(
            "rules done: %d messages, %d findings at the end, %d rule errors",
            self.messages_seen,
            len(findings),
            len(self.errors),
        )
        return findings

    def close(self) -> None:
        """Let every rule remove what it kept for ``finish``, temporary files included
        (safe to call more than once, and after a run that stopped early)."""
        for rule in self.rules:
            try:
                rule.close()
            except Exception as exc:  # the other rules still clean up
                self._failed(rule, "close", exc)

    def _failed(self, rule: Rule, where: str, exc: Exception) -> None:
        line = f"rule {rule.id} failed on {where}: {type(exc).__name__}: {exc}"
        logger.warning("%s", line, exc_info=logger.isEnabledFor(logging.DEBUG))
        self.errors.append(line)


def run_rules(
    case: CaseContext,
    records: Iterable[MessageRecord],
    rule_types: Iterable[type[Rule]] | None = None,
) -> Iterator[Finding]:
    """Yield every finding of the rules over ``records``: per-message findings as each
    record passes, then the findings of ``finish``."""
    rule_set = RuleSet(case, rule_types)
    try:
        for record in records:
            yield from rule_set.observe(record)
        yield from rule_set.finish()
    finally:
        rule_set.close()
