"""The one exception hierarchy of inbec-export; messages say what to do."""

from __future__ import annotations


class InbecError(Exception):
    """Base of every error the tool raises on purpose."""


class UsageError(InbecError):
    """The command line or its inputs are wrong (exit code 2)."""


class EvidenceError(InbecError):
    """An evidence file or item cannot be read."""


class OutputError(InbecError):
    """The case folder or another output cannot be written."""
