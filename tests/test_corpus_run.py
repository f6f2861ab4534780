"""The whole public corpus through `inbec analyze`: nothing fails, nothing is lost."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inbec_export.case import CaseContext
from inbec_export.pipeline import analyze


@pytest.fixture(scope="module")
def corpus_case(corpus_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("corpus-case")
    analyze([corpus_dir], CaseContext(case_id="corpus", legit_domains=("acme-corp.com",)), out)
    return out


def _summary(case_dir: Path) -> dict[str, object]:
    summary: dict[str, object] = json.loads((case_dir / "summary.json").read_text("utf-8"))
    return summary


def test_every_corpus_file_is_read(corpus_case: Path) -> None:
    summary = _summary(corpus_case)
    assert summary["status"] == "complete"
    totals = dict(summary["totals"])  # type: ignore[call-overload]
    totals.pop("findings")  # depends on the legitimate domains; see test_sample_case
    assert totals == {
        "evidence_files": 108,  # 16 PST + 33 MSG + 56 EML + 3 mbox
        "files_skipped": 17,  # MANIFEST.md and the 16 WHOIS text files
        "files_failed": 0,
        "messages_read": 1233,
        "messages_written": 1233,
        "items_failed": 0,
        "non_mail_items": 21,
        "subject_matches": 0,
    }
    assert summary["non_mail_items"] == {
        "IPM.Activity": 1,
        "IPM.Appointment": 5,
        "IPM.Contact": 9,
        "IPM.DistList": 2,
        "IPM.Microsoft.ScheduleData.FreeBusy": 3,
        "IPM.Task": 1,
    }


def test_messages_per_format(corpus_case: Path) -> None:
    per_format: dict[str, int] = {}
    for entry in _summary(corpus_case)["evidence"]:  # type: ignore[attr-defined]
        per_format[entry["format"]] = per_format.get(entry["format"], 0) + entry["messages"]
    # Formats are recognised by content: four SpamAssassin ".eml" files start with an
    # mbox "From " envelope line and are read as one-message mboxes. mbox: 632 + 1 + 3 as
    # Python's mailbox module counts them, plus those four, plus 2 messages attached to
    # list messages as message/rfc822 in mboxtest_shapelib_list.mbox (messages 100 and
    # 388); msg: 27 mail items plus 3 embedded messages; pst: the mail items readpst also
    # finds (see test_pst_oracle).
    assert per_format == {"eml": 52, "mbox": 642, "msg": 30, "pst": 509}
    formats = {
        Path(e["path"]).name: e["format"]
        for e in _summary(corpus_case)["evidence"]  # type: ignore[attr-defined]
    }
    assert formats["spamassassin_nice_authres.eml"] == "mbox"
    assert formats["sublime_bec_ceo_impersonation.eml"] == "eml"


def test_every_message_read_is_written_once(corpus_case: Path) -> None:
    lines = (corpus_case / "messages.ndjson").read_text("utf-8").splitlines()
    actions = [json.loads(line) for line in lines[0::2]]
    ids = [action["create"]["_id"] for action in actions]
    assert len(ids) == 1233
    assert len(set(ids)) == 1233
    documents = [json.loads(line) for line in lines[1::2]]
    assert [d["event"]["id"] for d in documents] == ids


def test_evidence_hashes_are_recorded(corpus_case: Path, corpus_dir: Path) -> None:
    import hashlib

    entries = {e["path"]: e for e in _summary(corpus_case)["evidence"]}  # type: ignore[attr-defined]
    path = corpus_dir / "pst" / "tghanem_user1@test.lab.pst"
    entry = entries[str(path)]
    assert entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert entry["size"] == path.stat().st_size
    assert entry["messages"] == 7


def test_every_written_field_is_mapped(corpus_case: Path) -> None:
    from inbec_export.ecs.mappings import index_templates, unmapped_fields

    templates = index_templates()
    counts = {}
    for kind in ("messages", "findings"):
        mapping = templates[kind]["template"]["mappings"]
        lines = (corpus_case / f"{kind}.ndjson").read_text("utf-8").splitlines()
        unmapped: set[str] = set()
        for line in lines[1::2]:
            unmapped |= unmapped_fields(json.loads(line), mapping)
        assert unmapped == set(), kind
        counts[kind] = len(lines) // 2
    assert counts["messages"] == 1233
    assert counts["findings"] == _summary(corpus_case)["totals"]["findings"]  # type: ignore[index]
