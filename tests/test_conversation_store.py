"""The thread-intrusion rule's conversation store: the same findings on disk as in memory,
and no temporary files left behind, whether the run ends well or not."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from inbec_export.case import CaseContext
from inbec_export.detections._conversations import ConversationStore
from inbec_export.detections.thread_intrusion import ThreadIntrusionRule
from inbec_export.pipeline import analyze
from inbec_export.sample.generator import LEGIT_DOMAINS, write_large_mbox

#: Messages of the generated mbox: several rounds of the sample case's threads.
MESSAGES = 120


@pytest.fixture(scope="module")
def mbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("evidence") / "large.mbox"
    write_large_mbox(path, MESSAGES)
    return path


def _analyze(mbox: Path, out: Path) -> None:
    analyze([mbox], CaseContext(case_id="store", legit_domains=LEGIT_DOMAINS), out)


def test_findings_on_disk_are_the_findings_in_memory(
    mbox: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _analyze(mbox, tmp_path / "memory")

    spill_dir = tmp_path / "spill"
    spill_dir.mkdir()
    spilled: list[Path] = []
    spill = ConversationStore._spill

    def counted_spill(store: ConversationStore[object]) -> None:
        spill(store)
        assert store.folder is not None
        spilled.append(store.folder)

    monkeypatch.setattr(ConversationStore, "_spill", counted_spill)
    monkeypatch.setattr(ThreadIntrusionRule, "spill_messages", 7)
    monkeypatch.setattr(ThreadIntrusionRule, "spill_dir", spill_dir)
    _analyze(mbox, tmp_path / "disk")

    assert len(spilled) == 1
    memory = (tmp_path / "memory" / "findings.ndjson").read_bytes()
    assert b'"thread-intrusion"' in memory
    assert (tmp_path / "disk" / "findings.ndjson").read_bytes() == memory
    assert list(spill_dir.iterdir()) == []


def test_temporary_files_are_removed_when_the_run_fails(
    mbox: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spill_dir = tmp_path / "spill"
    spill_dir.mkdir()
    monkeypatch.setattr(ThreadIntrusionRule, "spill_messages", 3)
    monkeypatch.setattr(ThreadIntrusionRule, "spill_dir", spill_dir)
    seen: list[Path] = []

    def progress(event: str, _detail: str) -> None:
        if event == "message":
            seen.extend(spill_dir.iterdir())
            if len(seen) > 20:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        analyze(
            [mbox],
            CaseContext(case_id="store", legit_domains=LEGIT_DOMAINS),
            tmp_path / "case",
            progress=progress,
        )

    assert seen, "the store never moved to disk"
    assert list(spill_dir.iterdir()) == []


def test_store_groups_and_counts_the_same_in_memory_and_on_disk(tmp_path: Path) -> None:
    picker = random.Random(5)
    entries = [
        ([f"k{picker.randrange(60)}" for _ in range(picker.randrange(1, 4))], i) for i in range(200)
    ]
    results = []
    for spill_messages in (10_000, 1, 50):
        store: ConversationStore[int] = ConversationStore(spill_messages, tmp_path)
        for keys, number in entries:
            store.add(keys, (number % 2, -number, f"doc{number:04d}"), number)
        assert store.on_disk is (spill_messages < len(entries))
        groups = sorted(list(members) for members in store.conversations())
        uses = [store.uses(f"k{index}") for index in range(61)]
        store.close()
        store.close()
        results.append((groups, uses))
    assert results[0] == results[1] == results[2]
    assert len(results[0][0]) > 1
    assert list(tmp_path.iterdir()) == []
