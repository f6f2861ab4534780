"""The visual report of a case folder: ``report.html``, one self-contained page.

The page is built from the case folder's own files after a run (or again with
``inbec report``), reading them as streams: ``messages.ndjson`` gives per-hour counts for
the timeline chart and the messages of the conversations where an intruder joined;
``findings.ndjson`` gives the findings table (the most severe :data:`FINDINGS_SHOWN`), the
lookalike domains and the chart's finding counts; ``failures.ndjson`` the first
:data:`FAILURES_SHOWN` failures. Memory does not grow with the number of messages.

Safety: every string from evidence is shown as text. It is HTML-escaped where the page is
written, or handed to the page's script as JSON (``<``, ``>`` and ``&`` escaped) that the
script reads with ``JSON.parse`` and puts into the page with ``textContent`` only. URLs are
defanged (``hxxps://evil[.]example``) and never made links; control and bidirectional
formatting characters are shown as escapes. A Content-Security-Policy allows the page's
own style and script by their SHA-256 hashes and nothing else: no network, no other
script, images only as ``data:`` URLs.

Limitations: the conversation of a thread-intrusion finding is rebuilt from the message
documents with the rule's own links (Message-ID, In-Reply-To, References, Thread-Index,
topic); that takes one more read of ``messages.ndjson``, or up to
:data:`THREAD_PASSES` in all when the links of a conversation are found late in the file.
"""

from __future__ import annotations

import base64
import difflib
import hashlib
import html
import json
import logging
import math
import os
import re
import unicodedata
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from inbec_export.detections.thread_intrusion import conversation_key, normalise_topic
from inbec_export.errors import OutputError, UsageError
from inbec_export.sinks.case_folder import (
    FAILURES_FILE,
    FINDINGS_FILE,
    MESSAGES_FILE,
    SUMMARY_FILE,
)

logger = logging.getLogger(__name__)

REPORT_FILE = "report.html"

#: Rows of the findings table, the most severe first (all are in findings.ndjson).
FINDINGS_SHOWN = 5000

#: Rows of the failures list (all are in failures.ndjson).
FAILURES_SHOWN = 5000

#: Rows of the lookalike-domain table.
LOOKALIKES_SHOWN = 500

#: Rows of the evidence-file table of the summary.
EVIDENCE_SHOWN = 1000

#: Conversations shown for thread-intrusion findings, the most severe first.
THREADS_SHOWN = 3

#: Messages shown per conversation (the joining message is always among them).
THREAD_MESSAGES_SHOWN = 500

#: Most reads of messages.ndjson that rebuild the conversations, the chart's pass included.
THREAD_PASSES = 3

#: Most bars of the timeline chart: the finest of hour, day, month and year that fits.
MAX_CHART_BUCKETS = 200

#: Size of the timeline chart's drawing, in CSS pixels.
CHART_WIDTH_PX = 960
CHART_HEIGHT_PX = 260
CHART_MARGIN_LEFT_PX = 48
CHART_MARGIN_BOTTOM_PX = 36
CHART_MARGIN_TOP_PX = 12
CHART_POINT_RADIUS_PX = 4
#: Width of a character of the axis labels (11 px font), for spacing them.
CHART_LABEL_CHAR_PX = 7

#: Recipients listed per message of a conversation.
THREAD_RECIPIENTS_SHOWN = 5

_SEVERITY_ORDER = {"critical": 0, "high": 1, "medium": 2, "low": 3}

#: C0 and C1 controls, DEL, zero-width and bidirectional formatting characters: shown as
#: escapes, since they hide or reorder what an analyst reads (UTS #39, Trojan Source).
_INVISIBLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")

_URL = re.compile(r"(?i)\b(https?|ftp)(://)([^\s/?#<>\"']+)")
_WWW_HOST = re.compile(r"(?i)\bwww\.[a-z0-9.-]+")
_DEFANGED_SCHEME = {"http": "hxxp", "https": "hxxps", "ftp": "fxp"}

#: The sizes of the timeline chart's buckets, finest first.
_GRANULARITIES = ("hour", "day", "month", "year")


def _visible_controls(text: str) -> str:
    def escape(match: re.Match[str]) -> str:
        code = ord(match.group())
        return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"

    return _INVISIBLE.sub(escape, text)


def defang(text: str) -> str:
    """``text`` with its URLs made unclickable: ``https://a.example/x`` becomes
    ``hxxps://a[.]example/x`` (the scheme and the dots of the host), ``www.a.example``
    becomes ``www[.]a[.]example``."""

    def url(match: re.Match[str]) -> str:
        scheme, separator, host = match.groups()
        defanged = _DEFANGED_SCHEME[scheme.lower()]
        if scheme.isupper():
            defanged = defanged.upper()
        return defanged + separator + host.replace(".", "[.]")

    def www(match: re.Match[str]) -> str:
        return match.group().replace(".", "[.]")

    text = _URL.sub(url, text)
    # A host already defanged above has no dot left, so it is not matched again.
    return _WWW_HOST.sub(www, text)


def evidence_text(value: object) -> str:
    """A value from evidence as the report shows it: invisible characters as escapes,
    URLs defanged (not yet HTML-escaped)."""
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(evidence_text(item) for item in value)
    return defang(_visible_controls(str(value)))


def _h(value: object) -> str:
    """Evidence text, escaped for HTML text and attribute values."""
    return html.escape(evidence_text(value), quote=True)


@dataclass(frozen=True)
class DiffSegment:
    """A run of characters of one side of a character diff, changed or not."""

    text: str
    changed: bool


def char_diff(lookalike: str, legit_domain: str) -> tuple[list[DiffSegment], list[DiffSegment]]:
    """The characters in which a lookalike domain differs from the domain it imitates.

    The Unicode strings are compared (difflib opcodes, no junk heuristic), so a Cyrillic
    ``а`` in place of a Latin ``a`` is one replaced character.

    Returns:
        The segments of ``lookalike`` (inserted and replaced characters changed) and of
        ``legit_domain`` (deleted and replaced characters changed).
    """
    matcher = difflib.SequenceMatcher(a=legit_domain, b=lookalike, autojunk=False)
    lookalike_side: list[DiffSegment] = []
    legit_side: list[DiffSegment] = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        changed = tag != "equal"
        if j2 > j1:
            lookalike_side.append(DiffSegment(lookalike[j1:j2], changed))
        if i2 > i1:
            legit_side.append(DiffSegment(legit_domain[i1:i2], changed))
    return lookalike_side, legit_side


def _code_points(text: str) -> str:
    return ", ".join(f"U+{ord(c):04X} {unicodedata.name(c, 'unnamed')}" for c in text)


def highlight(segments: list[DiffSegment]) -> str:
    """HTML of diff segments: changed runs in ``<mark class="diff">``, titled with the code
    point and name of each of their characters."""
    parts = []
    for segment in segments:
        text = _h(segment.text)
        if segment.changed:
            title = html.escape(_code_points(segment.text), quote=True)
            parts.append(f'<mark class="diff" title="{title}">{text}</mark>')
        else:
            parts.append(text)
    return "".join(parts)


def highlight_diff(lookalike: str, legit_domain: str) -> tuple[str, str]:
    """HTML of a lookalike domain and of the domain it imitates, the differing characters
    marked on each side."""
    lookalike_side, legit_side = char_diff(lookalike, legit_domain)
    return highlight(lookalike_side), highlight(legit_side)


def json_for_script(value: Any) -> str:
    """JSON that is safe inside a ``<script type="application/json">`` block: ``<``, ``>``
    and ``&`` are written as ``\\u003c``, ``\\u003e`` and ``\\u0026``, so no text in it can
    close the block or open a comment."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def csp_hash(source: str) -> str:
    """The CSP source expression that allows an inline block of exactly ``source``."""
    digest = hashlib.sha256(source.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode('ascii')}'"


# ---------------------------------------------------------------------------- reading


def _documents(path: Path) -> Iterator[dict[str, Any]]:
    """The documents of a ``_bulk`` file (action lines skipped), one at a time."""
    if not path.is_file():
        return
    with path.open(encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except ValueError:
                logger.warning("%s line %d: not JSON, left out of the report", path, number)
                continue
            if not isinstance(value, dict) or (len(value) == 1 and "create" in value):
                continue
            yield value


def _get(document: dict[str, Any], dotted: str) -> Any:
    value: Any = document
    for part in dotted.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _hour(timestamp: object) -> datetime | None:
    """The UTC hour of an ISO 8601 time, or None."""
    if not isinstance(timestamp, str):
        return None
    try:
        moment = datetime.fromisoformat(timestamp)
    except ValueError:
        return None
    return hour_of(moment)


def hour_of(moment: datetime | None) -> datetime | None:
    """The UTC hour of ``moment`` (a time without offset is taken as UTC), or None when
    there is none or it has no UTC hour (a time in the first hours of year 1 with a
    positive offset, or the last of year 9999 with a negative one)."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    except OverflowError:
        return None


@dataclass
class TimelineCounts:
    """Messages and findings per UTC hour, and those without a usable time."""

    messages: Counter[datetime] = field(default_factory=Counter)
    findings: Counter[datetime] = field(default_factory=Counter)
    undated_messages: int = 0
    undated_findings: int = 0

    def add_message(self, timestamp: object) -> None:
        """Count a message at its time (as its document gives it)."""
        self.count_message(_hour(timestamp))

    def count_message(self, hour: datetime | None) -> None:
        """Count a message in the UTC hour ``hour`` (see :func:`hour_of`); None: undated."""
        if hour is None:
            self.undated_messages += 1
        else:
            self.messages[hour] += 1

    def add_finding(self, timestamp: object) -> None:
        """Count a finding at its time."""
        hour = _hour(timestamp)
        if hour is None:
            self.undated_findings += 1
        else:
            self.findings[hour] += 1

    def buckets(self) -> tuple[str, list[tuple[str, int, int]]]:
        """The chart's granularity and its buckets, oldest first, empty ones included:
        ``(label, messages, findings)``."""
        hours = set(self.messages) | set(self.findings)
        if not hours:
            return "day", []
        first, last = min(hours), max(hours)
        granularity = next(
            (g for g in _GRANULARITIES if _bucket_count(g, first, last) <= MAX_CHART_BUCKETS),
            "year",
        )
        messages: Counter[str] = Counter()
        findings: Counter[str] = Counter()
        for hour, count in self.messages.items():
            messages[bucket_label(granularity, hour)] += count
        for hour, count in self.findings.items():
            findings[bucket_label(granularity, hour)] += count
        labels = _bucket_labels(granularity, first, last)
        return granularity, [(label, messages[label], findings[label]) for label in labels]


def bucket_label(granularity: str, hour: datetime) -> str:
    """The label of the chart bucket that holds ``hour`` (UTC)."""
    if granularity == "hour":
        return hour.strftime("%Y-%m-%d %H:00")
    if granularity == "day":
        return hour.strftime("%Y-%m-%d")
    if granularity == "month":
        return hour.strftime("%Y-%m")
    return hour.strftime("%Y")


def _bucket_count(granularity: str, first: datetime, last: datetime) -> int:
    if granularity == "hour":
        return int((last - first) / timedelta(hours=1)) + 1
    if granularity == "day":
        return (last.date() - first.date()).days + 1
    if granularity == "month":
        return (last.year - first.year) * 12 + last.month - first.month + 1
    return last.year - first.year + 1


def _bucket_labels(granularity: str, first: datetime, last: datetime) -> list[str]:
    if granularity in {"hour", "day"}:
        step = timedelta(hours=1) if granularity == "hour" else timedelta(days=1)
        start = first if granularity == "hour" else first.replace(hour=0)
        count = _bucket_count(granularity, first, last)
        return [bucket_label(granularity, start + step * i) for i in range(count)]
    if granularity == "month":
        months = range(first.year * 12 + first.month - 1, last.year * 12 + last.month)
        return [f"{m // 12:04d}-{m % 12 + 1:02d}" for m in months]
    return [f"{year:04d}" for year in range(first.year, last.year + 1)]


def message_links(document: dict[str, Any]) -> set[str]:
    """The keys that tie a message document into its conversation, as the thread-intrusion
    rule builds them: Message-ID, In-Reply-To, first and last References, the
    conversation part of Thread-Index, and the topic."""
    links: set[str] = set()
    for key in ("email.message_id", "inbec.in_reply_to"):
        value = _get(document, key)
        if isinstance(value, str) and value:
            links.add("m:" + value)
    references = _get(document, "inbec.references")
    if isinstance(references, list) and references:
        links.update("m:" + str(r) for r in (references[0], references[-1]))
    index = conversation_key(
        _get(document, "inbec.thread.index"), _get(document, "inbec.thread.conversation_index")
    )
    if index:
        links.add("t:" + index)
    topic, _ = normalise_topic(
        _get(document, "inbec.thread.topic") or _get(document, "email.subject")
    )
    if topic:
        links.add("s:" + topic)
    return links


@dataclass
class Conversation:
    """The conversation of one thread-intrusion finding, gathered from the messages."""

    finding: dict[str, Any]
    joined_doc_ids: set[str]
    links: set[str] = field(default_factory=set)
    member_ids: set[str] = field(default_factory=set)
    rows: list[dict[str, Any]] = field(default_factory=list)

    def observe(self, document: dict[str, Any]) -> bool:
        """Take ``document`` in if it belongs; True when that added a new message."""
        doc_id = _get(document, "event.id")
        if not isinstance(doc_id, str) or doc_id in self.member_ids:
            return False
        links = message_links(document)
        if doc_id not in self.joined_doc_ids and not links & self.links:
            return False
        self.links |= links
        self.member_ids.add(doc_id)
        if len(self.rows) < THREAD_MESSAGES_SHOWN or doc_id in self.joined_doc_ids:
            self.rows.append(_thread_row(document, doc_id in self.joined_doc_ids))
        return True


def _thread_row(document: dict[str, Any], joined: bool) -> dict[str, Any]:
    recipients = [
        *(_get(document, "email.to.address") or []),
        *(_get(document, "email.cc.address") or []),
    ]
    return {
        "timestamp": _get(document, "@timestamp"),
        "doc_id": _get(document, "event.id"),
        "from": _get(document, "email.from.address") or [],
        "display": _get(document, "inbec.display_names.from") or [],
        "to": recipients[:THREAD_RECIPIENTS_SHOWN],
        "more_recipients": max(0, len(recipients) - THREAD_RECIPIENTS_SHOWN),
        "subject": _get(document, "email.subject"),
        "reply_to": _get(document, "email.reply_to.address") or [],
        "evidence": _get(document, "inbec.evidence.path"),
        "item": _get(document, "inbec.evidence.item_id"),
        "joined": joined,
    }


def _order_key(row: dict[str, Any]) -> tuple[int, str, str]:
    severity = _SEVERITY_ORDER.get(str(row.get("severity")), len(_SEVERITY_ORDER))
    return (severity, str(row.get("timestamp") or "\uffff"), str(row.get("doc_id")))


@dataclass
class ReportData:
    """What the report shows, gathered from the case folder's files."""

    summary: dict[str, Any]
    timeline: TimelineCounts = field(default_factory=TimelineCounts)
    findings: list[dict[str, Any]] = field(default_factory=list)
    findings_total: int = 0
    by_rule: Counter[str] = field(default_factory=Counter)
    by_severity: Counter[str] = field(default_factory=Counter)
    lookalikes: list[dict[str, Any]] = field(default_factory=list)
    lookalikes_total: int = 0
    intrusions: list[dict[str, Any]] = field(default_factory=list)
    conversations: list[Conversation] = field(default_factory=list)
    conversations_complete: bool = True
    failures: list[dict[str, Any]] = field(default_factory=list)
    failures_total: int = 0
    messages_total: int = 0

    def add_finding(self, document: dict[str, Any]) -> None:
        """Count a finding and keep it if the report lists it."""
        rule_id = str(_get(document, "rule.id") or "")
        severity = str(_get(document, "inbec.finding.severity") or "")
        self.findings_total += 1
        self.by_rule[rule_id] += 1
        self.by_severity[severity] += 1
        self.timeline.add_finding(_get(document, "@timestamp"))
        row = _finding_row(document, rule_id, severity)
        self.findings.append(row)
        if len(self.findings) > 2 * FINDINGS_SHOWN:
            self.findings = sorted(self.findings, key=_order_key)[:FINDINGS_SHOWN]
        if rule_id == "lookalike-domain":
            self.lookalikes_total += 1
            if len(self.lookalikes) < LOOKALIKES_SHOWN:
                self.lookalikes.append(_get(document, "inbec.finding.evidence") or {})
        if rule_id == "thread-intrusion":
            self.intrusions.append({**document, "_order": _order_key(row)})
            if len(self.intrusions) > 2 * THREADS_SHOWN:
                self.intrusions = sorted(self.intrusions, key=lambda d: d["_order"])
                self.intrusions = self.intrusions[:THREADS_SHOWN]


def _finding_row(document: dict[str, Any], rule_id: str, severity: str) -> dict[str, Any]:
    return {
        "rule": rule_id,
        "severity": severity,
        "timestamp": _get(document, "@timestamp") or "",
        "from": evidence_text(_get(document, "email.from.address")),
        "subject": evidence_text(_get(document, "email.subject")),
        "reason": evidence_text(_get(document, "message")),
        "doc_id": evidence_text(_get(document, "event.id")),
    }


def gather(case_dir: Path, messages: TimelineCounts | None = None) -> ReportData:
    """Read the case folder's files into what the report shows.

    ``messages``: the messages of the case counted per hour as the run wrote them (see
    :meth:`TimelineCounts.count_message`); then ``messages.ndjson``, the largest file by
    far, is read only for the conversations of thread-intrusion findings, if any.

    Raises:
        UsageError: ``case_dir`` holds no complete case (no ``summary.json``, or a run
            that did not finish).
    """
    summary_path = case_dir / SUMMARY_FILE
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise UsageError(f"{case_dir} is not a case folder (no {SUMMARY_FILE})") from exc
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read {summary_path}: {exc}") from exc
    if not isinstance(summary, dict) or summary.get("status") != "complete":
        raise UsageError(f"the case in {case_dir} is incomplete: run inbec analyze again")
    _check_summary_shape(summary, summary_path)

    data = ReportData(summary)
    for document in _documents(case_dir / FINDINGS_FILE):
        # findings.ndjson may also hold enrichment documents (event.kind: enrichment).
        if _get(document, "event.kind") == "alert":
            data.add_finding(document)
    data.findings.sort(key=_order_key)
    del data.findings[FINDINGS_SHOWN:]
    data.intrusions = sorted(data.intrusions, key=lambda d: d["_order"])[:THREADS_SHOWN]

    if messages is not None:
        data.timeline.messages = Counter(messages.messages)
        data.timeline.undated_messages = messages.undated_messages
        data.messages_total = messages.undated_messages + sum(messages.messages.values())
    _read_messages(case_dir / MESSAGES_FILE, data, count=messages is None)
    _read_failures(case_dir / FAILURES_FILE, data)
    return data


def _read_messages(path: Path, data: ReportData, count: bool = True) -> None:
    """Count messages per hour (unless ``count`` is False: counted already) and gather the
    conversations of the intrusion findings, in one read, then in more reads while a
    conversation still grows. Nothing to count and no conversation: no read."""
    for finding in data.intrusions:
        joined = _get(finding, "inbec.finding.message_doc_ids") or []
        data.conversations.append(Conversation(finding, {str(doc_id) for doc_id in joined}))
    if not count and not data.conversations:
        return

    grew = False
    for document in _documents(path):
        if count:
            data.messages_total += 1
            data.timeline.add_message(_get(document, "@timestamp"))
        for conversation in data.conversations:
            grew = conversation.observe(document) or grew

    passes = 1
    while grew and data.conversations:
        if passes == THREAD_PASSES:
            data.conversations_complete = False
            logger.warning("%s: a conversation may have more messages than shown", path)
            break
        passes += 1
        grew = False
        for document in _documents(path):
            for conversation in data.conversations:
                grew = conversation.observe(document) or grew
        # The first read finds every message that links to the joining one, and may find
        # links to earlier messages; only a later read that adds nothing proves the end.

    for conversation in data.conversations:
        conversation.rows.sort(key=lambda row: (row["timestamp"] is None, row["timestamp"] or ""))


def _read_failures(path: Path, data: ReportData) -> None:
    if not path.is_file():
        return
    with path.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if not line.strip():
                continue
            data.failures_total += 1
            if len(data.failures) >= FAILURES_SHOWN:
                continue
            try:
                value = json.loads(line)
            except ValueError:
                value = {"reason": line.strip()}
            data.failures.append(value if isinstance(value, dict) else {"reason": value})


# --------------------------------------------------------------------------- rendering

_STYLE = """
:root { --ink: #1d2430; --muted: #5b6575; --line: #d9dee6; --accent: #1f5fbf;
  --bad: #b3261e; --warn: #b36b00; --bg: #f7f8fa; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif;
  color: var(--ink); background: var(--bg); }
header { background: #17202c; color: #fff; padding: 18px 28px; }
header h1 { margin: 0 0 4px; font-size: 20px; }
header p { margin: 0; color: #c4ccd8; }
main { padding: 8px 28px 40px; max-width: 1280px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 6px;
  padding: 14px 18px; margin: 16px 0; }
h2 { font-size: 16px; margin: 0 0 10px; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; vertical-align: top; padding: 5px 8px;
  border-bottom: 1px solid var(--line); overflow-wrap: break-word; }
td.nowrap, .domain, .sev { white-space: nowrap; }
td.mono { overflow-wrap: anywhere; }
#findings-table td.mono { min-width: 14ch; }
th { background: #eef1f5; font-weight: 600; }
.num { text-align: right; font-variant-numeric: tabular-nums; }
.note { color: var(--muted); margin: 8px 0 0; }
.mono, .domain { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; }
.domain { font-size: 16px; }
mark.diff { background: #ffd54f; color: #000; outline: 1px solid #b38600;
  border-radius: 2px; }
.legit mark.diff { background: #c8e6c9; outline-color: #2e7d32; }
.totals { display: flex; flex-wrap: wrap; gap: 10px; margin: 0 0 12px; }
.totals div { border: 1px solid var(--line); border-radius: 6px; padding: 8px 12px;
  min-width: 120px; }
.totals b { display: block; font-size: 20px; }
.sev { font-weight: 600; text-transform: uppercase; font-size: 12px; }
.sev-critical { color: var(--bad); }
.sev-high { color: #d84315; }
.sev-medium { color: var(--warn); }
.sev-low { color: var(--muted); }
tr.joined td { background: #fdecea; }
tr.joined td:first-child { border-left: 4px solid var(--bad); }
.tag { display: inline-block; background: var(--bad); color: #fff; border-radius: 3px;
  padding: 0 6px; font-size: 12px; font-weight: 600; }
.filters { display: flex; gap: 16px; align-items: center; margin: 0 0 10px; }
.chart { width: 100%; height: auto; }
.chart .bar-messages { fill: #5b8def; }
.chart .point-findings { fill: var(--bad); stroke: #fff; stroke-width: 1; }
.chart .axis { stroke: #9aa3b2; stroke-width: 1; }
.chart text { fill: var(--muted); font-size: 11px; }
.legend { display: flex; gap: 18px; margin: 4px 0 0; color: var(--muted); }
.swatch { display: inline-block; width: 10px; height: 10px; margin-right: 5px; }
.swatch-messages { background: #5b8def; }
.swatch-findings { background: var(--bad); border-radius: 50%; }
"""

_SCRIPT = """
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("report-data").textContent);
  const body = document.getElementById("findings-body");
  const ruleSelect = document.getElementById("filter-rule");
  const severitySelect = document.getElementById("filter-severity");
  const shown = document.getElementById("findings-shown");

  function addOption(select, value, label) {
    const option = document.createElement("option");
    option.value = value;
    option.textContent = label;
    select.appendChild(option);
  }

  function addCell(row, text, className) {
    const cell = document.createElement("td");
    cell.textContent = text;
    if (className) {
      cell.className = className;
    }
    row.appendChild(cell);
  }

  data.rules.forEach(function (pair) {
    addOption(ruleSelect, pair[0], pair[0] + " (" + pair[1] + ")");
  });
  data.severities.forEach(function (pair) {
    addOption(severitySelect, pair[0], pair[0] + " (" + pair[1] + ")");
  });

  const rows = data.findings.map(function (finding) {
    const row = document.createElement("tr");
    row.dataset.rule = finding.rule;
    row.dataset.severity = finding.severity;
    addCell(row, finding.severity, "sev sev-" + finding.severity);
    addCell(row, finding.rule, "mono nowrap");
    addCell(row, finding.timestamp, "mono");
    addCell(row, finding.from, "mono");
    addCell(row, finding.subject, "");
    addCell(row, finding.reason, "");
    addCell(row, finding.doc_id, "mono");
    body.appendChild(row);
    return row;
  });

  function applyFilters() {
    const rule = ruleSelect.value;
    const severity = severitySelect.value;
    let count = 0;
    rows.forEach(function (row) {
      const match = (rule === "" || row.dataset.rule === rule) &&
        (severity === "" || row.dataset.severity === severity);
      row.hidden = !match;
      if (match) {
        count += 1;
      }
    });
    shown.textContent = count + " of " + rows.length + " findings shown";
  }

  ruleSelect.addEventListener("change", applyFilters);
  severitySelect.addEventListener("change", applyFilters);
  applyFilters();
})();
"""


def content_security_policy() -> str:
    """The page's policy: its own style and script by hash, ``data:`` images, nothing
    else (no network, no forms, no plugins, no base URL)."""
    return "; ".join(
        (
            "default-src 'none'",
            f"script-src {csp_hash(_SCRIPT)}",
            f"style-src {csp_hash(_STYLE)}",
            "img-src data:",
            "base-uri 'none'",
            "form-action 'none'",
        )
    )


def _severity_sort(items: Counter[str]) -> list[tuple[str, int]]:
    return sorted(items.items(), key=lambda kv: (_SEVERITY_ORDER.get(kv[0], 9), kv[0]))


def _render_summary(data: ReportData) -> str:
    summary = data.summary
    totals = summary.get("totals") or {}
    case = summary.get("case") or {}
    boxes = [
        ("evidence files", totals.get("evidence_files")),
        ("messages", totals.get("messages_written")),
        ("findings", totals.get("findings")),
        ("items failed", totals.get("items_failed")),
        ("files skipped", totals.get("files_skipped")),
        ("non-mail items", totals.get("non_mail_items")),
    ]
    parts = ['<section id="summary"><h2>Case summary</h2><div class="totals">']
    for label, value in boxes:
        parts.append(f"<div><b>{_h(value if value is not None else 0)}</b>{label}</div>")
    parts.append("</div><table><tbody>")
    parts.append(f"<tr><th>legitimate domains</th><td>{_h(case.get('legit_domains'))}</td></tr>")
    if case.get("allowlist"):
        parts.append(f"<tr><th>allowlist</th><td>{_h(case.get('allowlist'))}</td></tr>")
    by_severity = ", ".join(f"{k} {v}" for k, v in _severity_sort(data.by_severity))
    by_rule = ", ".join(f"{k} {v}" for k, v in sorted(data.by_rule.items()))
    parts.append(f"<tr><th>findings by severity</th><td>{_h(by_severity or 'none')}</td></tr>")
    parts.append(f"<tr><th>findings by rule</th><td>{_h(by_rule or 'none')}</td></tr>")
    parts.append("</tbody></table>")

    evidence = summary.get("evidence") or []
    parts.append(
        '<h2>Evidence files</h2><table id="evidence-table"><thead><tr><th>file</th>'
        '<th>format</th><th class="num">messages</th><th class="num">failures</th>'
        "<th>SHA-256</th></tr></thead><tbody>"
    )
    for item in evidence[:EVIDENCE_SHOWN]:
        parts.append(
            f'<tr><td class="mono">{_h(item.get("path"))}</td><td>{_h(item.get("format"))}</td>'
            f'<td class="num">{_h(item.get("messages"))}</td>'
            f'<td class="num">{_h(item.get("failures"))}</td>'
            f'<td class="mono">{_h(item.get("sha256"))}</td></tr>'
        )
    parts.append("</tbody></table>")
    if len(evidence) > EVIDENCE_SHOWN:
        parts.append(
            f'<p class="note">First {EVIDENCE_SHOWN} of {len(evidence)} evidence files; '
            "all are in summary.json.</p>"
        )
    parts.append("</section>")
    return "".join(parts)


def render_chart(granularity: str, buckets: list[tuple[str, int, int]]) -> str:
    """The timeline chart as inline SVG: a bar per bucket with messages and a point per
    bucket with findings, each carrying ``data-bucket`` and ``data-count``."""
    if not buckets:
        return '<p class="note">No dated messages or findings.</p>'
    plot_w = CHART_WIDTH_PX - CHART_MARGIN_LEFT_PX
    plot_h = CHART_HEIGHT_PX - CHART_MARGIN_BOTTOM_PX - CHART_MARGIN_TOP_PX
    base_y = CHART_MARGIN_TOP_PX + plot_h
    top = max(max(m, f) for _, m, f in buckets) or 1
    slot = plot_w / len(buckets)
    shown_label = {"hour": slice(5, None), "day": slice(5, None)}.get(granularity, slice(None))
    label_px = CHART_LABEL_CHAR_PX * (len(buckets[0][0][shown_label]) + 2)
    label_every = max(1, math.ceil(len(buckets) * label_px / plot_w))

    def y(count: int) -> float:
        return base_y - plot_h * count / top

    parts = [
        f'<svg class="chart" id="timeline-chart" role="img" viewBox="0 0 {CHART_WIDTH_PX} '
        f'{CHART_HEIGHT_PX}" data-granularity="{granularity}">',
        f'<line class="axis" x1="{CHART_MARGIN_LEFT_PX}" y1="{base_y}" x2="{CHART_WIDTH_PX}" '
        f'y2="{base_y}"/>',
        f'<line class="axis" x1="{CHART_MARGIN_LEFT_PX}" y1="{CHART_MARGIN_TOP_PX}" '
        f'x2="{CHART_MARGIN_LEFT_PX}" y2="{base_y}"/>',
        f'<text x="{CHART_MARGIN_LEFT_PX - 6}" y="{CHART_MARGIN_TOP_PX + 10}" '
        f'text-anchor="end">{top}</text>',
        f'<text x="{CHART_MARGIN_LEFT_PX - 6}" y="{base_y}" text-anchor="end">0</text>',
    ]
    for index, (label, messages, findings) in enumerate(buckets):
        x = CHART_MARGIN_LEFT_PX + slot * index
        centre = x + slot / 2
        if messages:
            parts.append(
                f'<rect class="bar-messages" data-bucket="{label}" data-count="{messages}" '
                f'x="{x + slot * 0.15:.2f}" y="{y(messages):.2f}" width="{slot * 0.7:.2f}" '
                f'height="{base_y - y(messages):.2f}"><title>{label}: {messages} '
                f"message{'s' if messages != 1 else ''}</title></rect>"
            )
        if findings:
            parts.append(
                f'<circle class="point-findings" data-bucket="{label}" data-count="{findings}" '
                f'cx="{centre:.2f}" cy="{y(findings):.2f}" r="{CHART_POINT_RADIUS_PX}">'
                f"<title>{label}: {findings} finding{'s' if findings != 1 else ''}</title>"
                "</circle>"
            )
        if index % label_every == 0:
            parts.append(
                f'<text x="{centre:.2f}" y="{base_y + 16}" text-anchor="middle">'
                f"{label[shown_label]}</text>"
            )
    parts.append("</svg>")
    return "".join(parts)


def _render_timeline(data: ReportData) -> str:
    granularity, buckets = data.timeline.buckets()
    parts = [
        '<section id="timeline"><h2>Timeline</h2>',
        render_chart(granularity, buckets),
        '<div class="legend"><span><span class="swatch swatch-messages"></span>messages per '
        f'{granularity} (UTC)</span><span><span class="swatch swatch-findings"></span>'
        f"findings per {granularity}</span></div>",
    ]
    if buckets:
        parts.append(
            f'<p class="note">From {_h(buckets[0][0])} to {_h(buckets[-1][0])}: '
            f"{data.messages_total} messages, {data.findings_total} findings.</p>"
        )
    undated = data.timeline.undated_messages, data.timeline.undated_findings
    if any(undated):
        parts.append(
            f'<p class="note">Without a usable time: {undated[0]} messages, '
            f"{undated[1]} findings.</p>"
        )
    parts.append("</section>")
    return "".join(parts)


def _render_lookalikes(data: ReportData) -> str:
    parts = ['<section id="lookalikes"><h2>Lookalike domains</h2>']
    if not data.lookalikes:
        parts.append('<p class="note">No lookalike domain.</p></section>')
        return "".join(parts)
    parts.append(
        '<table id="lookalike-table"><thead><tr><th>lookalike</th><th>imitates</th>'
        '<th>technique</th><th class="num">messages</th><th>first seen</th><th>how</th>'
        "</tr></thead><tbody>"
    )
    for evidence in data.lookalikes:
        domain = str(evidence.get("domain") or "")
        unicode_form = str(evidence.get("unicode") or domain)
        legit = str(evidence.get("legit_domain") or "")
        marked, legit_marked = highlight_diff(unicode_form, legit)
        ascii_note = (
            f'<br><span class="note mono">{_h(domain)}</span>' if unicode_form != domain else ""
        )
        parts.append(
            f'<tr><td class="domain lookalike">{marked}{ascii_note}</td>'
            f'<td class="domain legit">{legit_marked}</td>'
            f"<td>{_h(evidence.get('techniques'))}</td>"
            f'<td class="num">{_h(evidence.get("message_count"))}</td>'
            f'<td class="mono">{_h(evidence.get("first_seen"))}</td>'
            f"<td>{_h(evidence.get('detail'))}</td></tr>"
        )
    parts.append("</tbody></table>")
    if data.lookalikes_total > len(data.lookalikes):
        more = data.lookalikes_total - len(data.lookalikes)
        parts.append(f'<p class="note">{more} more lookalike domains in findings.ndjson.</p>')
    parts.append("</section>")
    return "".join(parts)


def _render_conversation(conversation: Conversation) -> str:
    finding = conversation.finding
    evidence = _get(finding, "inbec.finding.evidence") or {}
    topic = _get(evidence, "conversation.topic")
    total = len(conversation.member_ids)
    parts = [
        f'<div class="conversation"><h3>{_h(topic or "(no subject)")}</h3>',
        f'<p><span class="sev sev-{_h(_get(finding, "inbec.finding.severity"))}">'
        f"{_h(_get(finding, 'inbec.finding.severity'))}</span> {_h(_get(finding, 'message'))}</p>",
        '<table class="thread-table"><thead><tr><th>#</th><th>time</th><th>from</th>'
        "<th>to, cc</th><th>subject</th><th>evidence</th></tr></thead><tbody>",
    ]
    for number, row in enumerate(conversation.rows, start=1):
        mark = ' class="joined"' if row["joined"] else ""
        tag = ' <span class="tag">joined here</span>' if row["joined"] else ""
        display = f"{_h(row['display'])}<br>" if row["display"] else ""
        reply_to = f"<br>Reply-To: {_h(row['reply_to'])}" if row["reply_to"] else ""
        more = f" +{row['more_recipients']} more" if row["more_recipients"] else ""
        parts.append(
            f'<tr{mark}><td class="num">{number}{tag}</td><td class="mono">'
            f"{_h(row['timestamp'])}</td><td>{display}"
            f'<span class="mono">{_h(row["from"])}</span>{reply_to}</td>'
            f'<td class="mono">{_h(row["to"])}{more}</td><td>{_h(row["subject"])}</td>'
            f'<td class="mono">{_h(row["evidence"])} [{_h(row["item"])}]</td></tr>'
        )
    parts.append("</tbody></table>")
    if total > len(conversation.rows):
        parts.append(
            f'<p class="note">{len(conversation.rows)} of the {total} messages of this '
            "conversation shown.</p>"
        )
    parts.append("</div>")
    return "".join(parts)


def _render_threads(data: ReportData) -> str:
    parts = ['<section id="thread"><h2>Where the intruder joined the thread</h2>']
    if not data.conversations:
        parts.append('<p class="note">No thread-intrusion finding.</p></section>')
        return "".join(parts)
    for conversation in data.conversations:
        parts.append(_render_conversation(conversation))
    total = data.by_rule.get("thread-intrusion", 0)
    if total > len(data.conversations):
        parts.append(
            f'<p class="note">The {len(data.conversations)} most severe of {total} '
            "thread-intrusion findings shown.</p>"
        )
    if not data.conversations_complete:
        parts.append(
            f'<p class="note">The conversations were gathered in {THREAD_PASSES} reads of '
            "messages.ndjson and may have more messages than shown.</p>"
        )
    parts.append("</section>")
    return "".join(parts)


def _render_findings(data: ReportData) -> str:
    parts = [
        '<section id="findings"><h2>Findings</h2><div class="filters">',
        '<label>Rule <select id="filter-rule"><option value="">all rules</option></select></label>',
        '<label>Severity <select id="filter-severity"><option value="">all severities'
        "</option></select></label>",
        '<span id="findings-shown" class="note"></span></div>',
        "<noscript><p>The findings table needs JavaScript; all findings are in "
        "findings.ndjson and timeline.csv.</p></noscript>",
        '<table id="findings-table"><thead><tr><th>severity</th><th>rule</th><th>time</th>'
        "<th>from</th><th>subject</th><th>reason</th><th>document id</th></tr></thead>"
        '<tbody id="findings-body"></tbody></table>',
    ]
    if data.findings_total > len(data.findings):
        more = data.findings_total - len(data.findings)
        parts.append(
            f'<p class="note" id="findings-more">The {len(data.findings)} most severe of '
            f"{data.findings_total} findings shown; {more} more in findings.ndjson.</p>"
        )
    parts.append("</section>")
    return "".join(parts)


def _render_failures(data: ReportData) -> str:
    parts = ['<section id="failures"><h2>Items that could not be read</h2>']
    if not data.failures:
        parts.append('<p class="note">None.</p></section>')
        return "".join(parts)
    parts.append(
        '<table id="failures-table"><thead><tr><th>file</th><th>item</th><th>reason</th>'
        "</tr></thead><tbody>"
    )
    for failure in data.failures:
        parts.append(
            f'<tr><td class="mono">{_h(failure.get("file"))}</td>'
            f'<td class="mono">{_h(failure.get("item") or "(whole file)")}</td>'
            f"<td>{_h(failure.get('reason'))}</td></tr>"
        )
    parts.append("</tbody></table>")
    if data.failures_total > len(data.failures):
        more = data.failures_total - len(data.failures)
        parts.append(f'<p class="note">{more} more in failures.ndjson.</p>')
    parts.append("</section>")
    return "".join(parts)


def _script_data(data: ReportData) -> dict[str, Any]:
    return {
        "findings": data.findings,
        "rules": sorted(data.by_rule.items()),
        "severities": _severity_sort(data.by_severity),
    }


def render(data: ReportData) -> str:
    """The whole page."""
    case_id = _get(data.summary, "case.id") or "case"
    version = _get(data.summary, "tool.version") or ""
    return "".join(
        (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
            '<meta http-equiv="Content-Security-Policy" content="'
            f'{html.escape(content_security_policy(), quote=True)}">',
            '<meta name="referrer" content="no-referrer">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            '<link rel="icon" href="data:,">',
            f"<title>inbec report: {_h(case_id)}</title>",
            f"<style>{_STYLE}</style></head><body>",
            f"<header><h1>BEC case {_h(case_id)}</h1><p>inbec-export {_h(version)} report "
            "of the case folder; evidence links are defanged and never fetched.</p></header>",
            "<main>",
            _render_summary(data),
            _render_timeline(data),
            _render_lookalikes(data),
            _render_threads(data),
            _render_findings(data),
            _render_failures(data),
            "</main>",
            '<script type="application/json" id="report-data">',
            json_for_script(_script_data(data)),
            "</script>",
            f"<script>{_SCRIPT}</script>",
            "</body></html>\n",
        )
    )


#: The parts of ``summary.json`` the report reads, and the JSON type each must have.
_SUMMARY_SHAPE: dict[str, type] = {"totals": dict, "case": dict, "evidence": list}


def _check_summary_shape(summary: dict[str, Any], path: Path) -> None:
    """Refuse, in one line, a ``summary.json`` whose parts are not what the tool writes
    (an edited or damaged file), instead of failing half-way through the page."""
    for key, kind in _SUMMARY_SHAPE.items():
        value = summary.get(key)
        if value is not None and not isinstance(value, kind):
            raise UsageError(
                f"cannot read {path}: {key!r} is a {type(value).__name__}, not "
                f"{'an object' if kind is dict else 'a list'} (was the file edited?)"
            )
    for item in summary.get("evidence") or []:
        if not isinstance(item, dict):
            raise UsageError(f"cannot read {path}: 'evidence' holds a {type(item).__name__}")


def write_report(case_dir: Path, messages: TimelineCounts | None = None) -> Path:
    """Write ``report.html`` into the case folder ``case_dir`` (under a ``.partial`` name,
    moved into place when complete). ``messages``: see :func:`gather`.

    Returns:
        The path of the report.

    Raises:
        UsageError: ``case_dir`` holds no complete case.
        OutputError: the report cannot be written.
    """
    data = gather(case_dir, messages)
    path = case_dir / REPORT_FILE
    partial = case_dir / f"{REPORT_FILE}.partial"
    try:
        with partial.open("w", encoding="utf-8", newline="\n", errors="backslashreplace") as out:
            out.write(render(data))
        os.replace(partial, path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {exc.strerror}") from exc
    logger.info("wrote %s", path)
    return path
