"""Detection rules: each module holds one rule (or a few close ones) and registers it.

Importing this package registers every rule; :class:`RuleSet` runs them over a stream
of message records.
"""

from __future__ import annotations

from inbec_export.detections import (  # noqa: F401  (registration)
    auth_failure,
    display_name,
    lookalike_domain,
    lookalike_message,
    originating_ip,
    payment_language,
    reply_path,
    subject_match,
    suspicious_mailbox,
    thread_intrusion,
)
from inbec_export.detections.base import Rule, register, rules
from inbec_export.detections.runner import RuleSet, run_rules
from inbec_export.detections.subject_match import SUBJECT_MATCH_COLUMNS, subject_match_row

__all__ = [
    "SUBJECT_MATCH_COLUMNS",
    "Rule",
    "RuleSet",
    "register",
    "rules",
    "run_rules",
    "subject_match_row",
]
