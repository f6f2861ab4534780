"""The per-message stage: prepared where a message is read, the same as prepared here."""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterable
from pathlib import Path

import pytest

from inbec_export.case import CaseContext
from inbec_export.detections import base
from inbec_export.detections.base import Rule
from inbec_export.model import Finding, MessageRecord, MessageRef
from inbec_export.pipeline import analyze
from inbec_export.prepare import MessagePreparer, PreparedMessage
from inbec_export.readers import isolation, iter_evidence
from inbec_export.sample.generator import generate_sample_case


def _case(legit: Iterable[str]) -> CaseContext:
    return CaseContext(case_id="prepare", legit_domains=tuple(legit))


def test_only_rules_that_keep_nothing_between_messages_run_per_message() -> None:
    preparer = MessagePreparer(_case(["acme-corp.com"]))
    assert sorted(rule.id for rule in preparer.rule_types) == [
        "auth-failure",
        "lookalike-message",
        "payment-language",
        "subject-match",
    ]


def _record(subject: str) -> MessageRecord:
    return MessageRecord(
        evidence_path="x.eml",
        evidence_sha256="0" * 64,
        evidence_format="eml",
        item_id="message",
        subject=subject,
    )


def test_a_preparer_pickles_without_its_rule_instances() -> None:
    preparer = MessagePreparer(_case(["acme-corp.com"]))
    first = preparer(_record("Urgent wire"))
    copy = pickle.loads(pickle.dumps(preparer))
    assert copy._rules is None
    again = copy(_record("Urgent wire"))
    assert again.document == first.document
    assert again.rule_ids == first.rule_ids == ["payment-language"]


def test_records_prepared_in_worker_processes_equal_records_prepared_here(
    tmp_path: Path,
) -> None:
    sample = generate_sample_case(tmp_path / "sample")
    preparer = MessagePreparer(_case(sample.legit_domains))
    here = [
        preparer(event)
        for event in iter_evidence([sample.evidence_dir])
        if isinstance(event, MessageRecord)
    ]
    there = [
        event
        for event in iter_evidence([sample.evidence_dir], workers=2, prepare=preparer)
        if isinstance(event, PreparedMessage)
    ]
    assert len(here) == len(there) == len(sample.messages)
    assert [p.document for p in there] == [p.document for p in here]
    assert [p.events for p in there] == [p.events for p in here]
    assert [[f.doc_id for f in p.findings] for p in there] == [
        [f.doc_id for f in p.findings] for p in here
    ]
    flagged = [p for p in there if p.rule_ids]
    assert flagged, "the sample case has messages the per-message rules flag"
    for prepared in flagged:
        document = json.loads(prepared.document or "")
        assert document["inbec"]["finding"]["rule_ids"] == prepared.rule_ids


class _EagerSpanningRule(Rule):
    """A rule that keeps state yet raises a finding at once (against the contract)."""

    id = "eager-test"
    name = "Eager test rule"

    def observe(self, record: MessageRecord) -> Iterable[Finding]:
        return [
            Finding(
                rule_id=self.id,
                rule_name=self.name,
                severity="low",
                reason=f"seen {record.item_id}",
                key=record.doc_id,
                messages=[MessageRef.of(record)],
            )
        ]


def test_a_finding_raised_at_once_by_a_spanning_rule_is_named_in_the_document(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(base, "_REGISTRY", [*base.rules(), _EagerSpanningRule])
    evidence = tmp_path / "one.eml"
    evidence.write_bytes(b"From: a@example.com\r\nSubject: hello\r\n\r\nbody\r\n")
    summary = analyze([evidence], _case([]), tmp_path / "case")
    assert summary["findings_by_rule"] == {"eager-test": 1}
    lines = (tmp_path / "case" / "messages.ndjson").read_text("utf-8").splitlines()
    assert len(lines) == 2
    assert json.loads(lines[1])["inbec"]["finding"]["rule_ids"] == ["eager-test"]


def test_records_and_findings_cross_a_process_boundary_unchanged(tmp_path: Path) -> None:
    sample = generate_sample_case(tmp_path / "sample")
    preparer = MessagePreparer(_case(sample.legit_domains))
    records = [e for e in iter_evidence([sample.evidence_dir]) if isinstance(e, MessageRecord)]
    prepared = [preparer(record) for record in records]
    findings = [finding for p in prepared for finding in p.findings]
    assert findings, "the sample case has per-message findings"
    for value in [*records, *findings, *prepared]:
        copy = pickle.loads(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
        assert copy == value
        assert type(copy) is type(value)
    # Nested values keep their types (frozen dataclasses, not tuples).
    with_hops = [r for r in records if r.hops]
    assert with_hops
    copy = pickle.loads(pickle.dumps(with_hops[0]))
    assert type(copy.hops[0]) is type(with_hops[0].hops[0])
    assert copy.from_[0].domain == with_hops[0].from_[0].domain


def _folder_files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_messages_the_pst_reading_child_prepares_give_the_same_case_folder(
    corpus_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reading child prepares the messages it reads while the analysis process is
    behind: whether it prepares all of them or none, the case folder is the same."""
    evidence = corpus_dir / "pst"
    prepared_here: list[int] = []
    prepare = MessagePreparer.__call__

    def counted(self: MessagePreparer, record: MessageRecord) -> PreparedMessage:
        prepared_here.append(1)  # counts the calls of this process only, not the child's
        return prepare(self, record)

    monkeypatch.setattr(MessagePreparer, "__call__", counted)
    # A child is given the share of the pipe as it starts (by fork or by spawn): an
    # empty pipe is already full enough, and a pipe is never twice full.
    monkeypatch.setattr(isolation, "SPARE_FILL", 0.0)
    summary = analyze([evidence], _case(["acme-corp.com"]), tmp_path / "child")
    in_child = len(prepared_here)
    monkeypatch.setattr(isolation, "SPARE_FILL", 2.0)
    analyze([evidence], _case(["acme-corp.com"]), tmp_path / "here")
    here = len(prepared_here) - in_child

    messages = summary["totals"]["messages_read"]
    assert messages == 509
    assert in_child == 0  # the child prepared every message
    assert here == messages
    child_files = _folder_files(tmp_path / "child")
    assert child_files == _folder_files(tmp_path / "here")
    assert "messages.ndjson" in child_files
