"""The detection rule interface and registry: one module per rule registers here."""

from __future__ import annotations

from abc import ABC
from collections.abc import Iterable
from typing import ClassVar

from inbec_export.case import CaseContext
from inbec_export.model import Finding, MessageRecord, Severity


class Rule(ABC):
    """A detection rule over the stream of message records.

    ``observe`` sees each message once, in evidence order, and may yield findings about
    that message at once; ``finish`` runs after the last message and yields findings that
    need the whole case (counts, first and last seen, conversations). Rules keep only
    small per-message references, never whole records, so memory stays bounded by what
    they report.
    """

    id: ClassVar[str]
    name: ClassVar[str]
    severity: ClassVar[Severity] = "medium"
    description: ClassVar[str] = ""
    #: True for a rule that keeps nothing between messages and raises all its findings
    #: from ``observe``: it may then run wherever the message is read (a reading worker
    #: process), in any order. A rule that keeps state leaves it False and must raise
    #: findings only from ``finish``, so that a message document can be written before
    #: the rules that span messages have seen it.
    per_message: ClassVar[bool] = False

    def __init__(self, case: CaseContext) -> None:
        self.case = case

    def observe(self, record: MessageRecord) -> Iterable[Finding]:
        """Look at one message; yield findings that concern it alone."""
        return ()

    def finish(self) -> Iterable[Finding]:
        """Yield the findings that need every message."""
        return ()

    def close(self) -> None:
        """Let go of what the rule keeps for ``finish`` (temporary files included); called
        when a run stops before or after ``finish``, and safe to call twice."""
        return None


_REGISTRY: list[type[Rule]] = []


def register(rule: type[Rule]) -> type[Rule]:
    """Class decorator that adds a rule to the registry (ids must be unique)."""
    if any(existing.id == rule.id and existing is not rule for existing in _REGISTRY):
        raise ValueError(f"duplicate rule id {rule.id}")
    if rule not in _REGISTRY:
        _REGISTRY.append(rule)
    return rule


def rules() -> list[type[Rule]]:
    """The registered rules, in registration order."""
    return list(_REGISTRY)
