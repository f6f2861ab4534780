"""The case folder: ECS documents, timelines, mappings and a summary on local disk.

Every file is written under a ``.partial`` name and moved into place only when the run
completes, and ``summary.json`` says ``"status": "running"`` until then: an interrupted
run never leaves a file that looks complete. The document files are in Elasticsearch
``_bulk`` format (an action line with the deterministic ``_id``, then the document), so
``curl --data-binary @messages.ndjson .../INDEX/_bulk`` loads them as they are.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from inbec_export import TOOL_NAME
from inbec_export.case import is_case_folder
from inbec_export.ecs.mappings import index_templates
from inbec_export.errors import OutputError, UsageError
from inbec_export.model import Finding, ItemFailure
from inbec_export.sinks.spill import SortedSpill

logger = logging.getLogger(__name__)

#: Files of the case folder, by role.
MESSAGES_FILE = "messages.ndjson"
FINDINGS_FILE = "findings.ndjson"
TIMELINE_CSV = "timeline.csv"
TIMELINE_JSONL = "timeline.jsonl"
FAILURES_FILE = "failures.ndjson"
SUBJECT_MATCHES_CSV = "subject-matches.csv"
SUMMARY_FILE = "summary.json"
MAPPINGS_DIR = "mappings"

TIMELINE_COLUMNS = (
    "timestamp",
    "rule_id",
    "severity",
    "sender",
    "recipients",
    "subject",
    "source_ip",
    "message_id",
    "evidence",
    "item",
    "doc_id",
    "reason",
)
SUBJECT_COLUMNS = ("date", "from", "to", "subject", "message_id", "doc_id")

#: File names that are not valid UTF-8 reach us with surrogate escapes (PEP 383): they are
#: written as ``\udcXX`` so that the bytes stay recognisable and the run goes on.
_ENCODE_ERRORS = "backslashreplace"

#: Control characters (C0, DEL, C1) and Unicode line breaks: escaped, so that a terminal
#: acts on none and every row stays one line.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")

#: Characters that make a spreadsheet read a cell as a formula (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> str:
    """A CSV cell that a spreadsheet shows as text, never runs as a formula, and that a
    terminal shows without acting on escape sequences (``ESC`` becomes ``\\x1b``); a file
    name byte that is not UTF-8 is written ``\\xff``, as the JSON files write it."""
    text = "" if value is None else str(value)
    if text.startswith(_FORMULA_START):
        text = "'" + text
    return _CONTROL.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:  # a file name byte that is not UTF-8, as in the JSON files
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def timeline_rows(finding: Finding) -> list[tuple[str, ...]]:
    """The ``timeline.csv`` rows of a finding: one per message it concerns.

    A finding that sums up many messages (a domain, a mailbox, an IP) gives a row for each
    of them, so that the timeline shows every suspicious message at its own time.
    """
    if not finding.messages:
        when = finding.timestamp.isoformat() if finding.timestamp else ""
        return [(when, finding.rule_id, finding.severity, *([""] * 8), finding.reason)]
    return [
        (
            ref.timestamp.isoformat() if ref.timestamp else "",
            finding.rule_id,
            finding.severity,
            ref.sender or "",
            "; ".join(ref.recipients),
            ref.subject or "",
            ref.source_ip or "",
            ref.message_id or "",
            ref.evidence_path or "",
            ref.item_id or "",
            ref.doc_id,
            finding.reason,
        )
        for ref in finding.messages
    ]


def document_json(value: Any) -> str:
    """``value`` as the one line of JSON the case folder's files hold (keys sorted)."""
    return strict_json(json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True))


#: Lone surrogates: what Python makes of bytes that are not UTF-8 in file names.
_SURROGATE = re.compile("[\ud800-\udfff]")


def strict_json(text: str) -> str:
    """JSON text with no lone surrogate, which strict parsers reject (RFC 8259 section 8.2).

    A file name byte that is not UTF-8 (``\\udcff`` after Python's surrogateescape) is
    written as the visible text ``\\xff``; the file name stays readable and unambiguous.
    """
    # Lone surrogates are the only text UTF-8 cannot encode: two quick tests (a plain
    # search costs a hundred microseconds on a long body) before the substitution.
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub(_surrogate_text, text)
    return text


def _surrogate_text(match: re.Match[str]) -> str:
    code = ord(match.group())
    # Inside a JSON string a backslash is written doubled.
    return f"\\\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"\\\\u{code:04x}"


def check_out_dir(out_dir: Path, inputs: Iterable[Path]) -> None:
    """Refuse a case folder that could overwrite evidence or anything else of the user's.

    The case folder may be new, empty, or a case folder this tool wrote before (its
    ``summary.json`` says so). It may lie inside an evidence folder (it is then not read
    as evidence), but it may not be an evidence input itself.

    Raises:
        UsageError: ``out_dir`` is a file, an evidence input, or a folder with other files.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {out_dir} is a file, not a folder")
    resolved = out_dir.resolve()
    for source in inputs:
        if source.resolve() == resolved:
            raise UsageError(
                f"--out {out_dir} is the evidence itself: write the case folder elsewhere"
            )
    if out_dir.is_dir():
        names = os.listdir(out_dir)
        if names and not is_case_folder(out_dir, names):
            raise UsageError(
                f"--out {out_dir} holds files that are not a case folder of this tool; "
                "give a new or empty folder (nothing was written)"
            )


class CaseFolder:
    """Writes one analysis run into ``out_dir``; use as a context manager or call close()."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            (out_dir / MAPPINGS_DIR).mkdir(exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create case folder {out_dir}: {exc.strerror}") from exc
        self._write_json(SUMMARY_FILE, {"tool": {"name": TOOL_NAME}, "status": "running"})
        # Files of an earlier run that this run may not write again must not linger.
        for name in (SUBJECT_MATCHES_CSV, TIMELINE_CSV):
            (out_dir / name).unlink(missing_ok=True)
        self._handles: dict[str, IO[str]] = {}
        for name in (MESSAGES_FILE, FINDINGS_FILE, TIMELINE_JSONL, FAILURES_FILE):
            self._handles[name] = self._open(name)
        self._timeline_rows = SortedSpill(out_dir, TIMELINE_CSV)
        self._subject_rows = SortedSpill(out_dir, SUBJECT_MATCHES_CSV)
        self.messages_written = 0
        self.findings_written = 0

    def _open(self, name: str) -> IO[str]:
        try:
            return (self.out_dir / f"{name}.partial").open(
                "w", encoding="utf-8", newline="\n", errors=_ENCODE_ERRORS
            )
        except OSError as exc:
            raise OutputError(f"cannot write {self.out_dir / name}: {exc.strerror}") from exc

    def _write_json(self, name: str, value: Any) -> None:
        partial = self.out_dir / f"{name}.partial"
        text = json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True)
        with partial.open("w", encoding="utf-8", errors=_ENCODE_ERRORS) as handle:
            handle.write(strict_json(text) + "\n")
        os.replace(partial, self.out_dir / name)

    def write_message(self, doc_id: str, document: dict[str, Any]) -> None:
        """Append a message document (bulk action line, then the document)."""
        self.write_message_json(doc_id, document_json(document))

    def write_message_json(self, doc_id: str, text: str) -> None:
        """Append a message document given as its :func:`document_json` text."""
        handle = self._handles[MESSAGES_FILE]
        handle.write(document_json({"create": {"_id": doc_id}}) + "\n")
        handle.write(text + "\n")
        self.messages_written += 1

    def write_finding(self, finding: Finding, document: dict[str, Any]) -> None:
        """Append a finding document and its rows of the suspicious-events timeline."""
        handle = self._handles[FINDINGS_FILE]
        handle.write(document_json({"create": {"_id": finding.doc_id}}) + "\n")
        handle.write(document_json(document) + "\n")
        self.findings_written += 1
        for row in timeline_rows(finding):
            self._timeline_rows.add(row)

    def write_document(self, doc_id: str, document: dict[str, Any]) -> None:
        """Append another document of the findings index (an enrichment document)."""
        handle = self._handles[FINDINGS_FILE]
        handle.write(document_json({"create": {"_id": doc_id}}) + "\n")
        handle.write(document_json(document) + "\n")

    def write_events(self, events: list[dict[str, Any]]) -> None:
        """Append Timesketch events to ``timeline.jsonl``."""
        self.write_event_lines([document_json(event) for event in events])

    def write_event_lines(self, lines: list[str]) -> None:
        """Append Timesketch events given as their :func:`document_json` text."""
        handle = self._handles[TIMELINE_JSONL]
        for line in lines:
            handle.write(line + "\n")

    def write_failure(self, failure: ItemFailure) -> None:
        """Append an item that could not be read, with its reason."""
        record = {"file": failure.evidence_path, "item": failure.item, "reason": failure.reason}
        self._handles[FAILURES_FILE].write(document_json(record) + "\n")

    def add_subject_match(self, row: tuple[str, ...]) -> None:
        """Keep a row of ``subject-matches.csv`` (date, from, to, subject, ids)."""
        self._subject_rows.add(row)

    def close(self, summary: dict[str, Any], write_subject_matches: bool) -> None:
        """Finish every file, move them into place and write the final summary."""
        for handle in self._handles.values():
            handle.close()
        self._write_csv(TIMELINE_CSV, TIMELINE_COLUMNS, self._timeline_rows)
        if write_subject_matches:
            self._write_csv(SUBJECT_MATCHES_CSV, SUBJECT_COLUMNS, self._subject_rows)
        for name in self._handles:
            os.replace(self.out_dir / f"{name}.partial", self.out_dir / name)
        for kind, template in index_templates().items():
            self._write_json(f"{MAPPINGS_DIR}/{kind}.json", template)
        self._write_json(SUMMARY_FILE, {**summary, "status": "complete"})

    def abort(self) -> None:
        """Close the files of an interrupted run and mark ``summary.json`` incomplete."""
        for handle in self._handles.values():
            handle.close()
        self._timeline_rows.discard()
        self._subject_rows.discard()
        self._write_json(SUMMARY_FILE, {"tool": {"name": TOOL_NAME}, "status": "incomplete"})

    def _write_csv(
        self, name: str, columns: tuple[str, ...], rows: Iterable[tuple[str, ...]]
    ) -> None:
        partial = self.out_dir / f"{name}.partial"
        with partial.open("w", encoding="utf-8", newline="", errors=_ENCODE_ERRORS) as handle:
            writer = csv.writer(handle)
            writer.writerow(columns)
            for row in rows:
                writer.writerow([csv_cell(cell) for cell in row])
        os.replace(partial, self.out_dir / name)
