"""Damaged copies of every corpus PST, MSG and mbox: the run completes, nothing is lost.

Each copy is cut at 512 bytes, a third and two thirds of its size, or has three 64-byte
runs of its bytes inverted. Beside them: an empty ``.pst``, random bytes named ``.pst`` and
``.msg``, a folder named like a PST and a file the analyst may not read.
"""

from __future__ import annotations

import json
import os
import pwd
import random
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from inbec_export.case import CaseContext
from inbec_export.pipeline import analyze

#: Where each damaged copy is cut, as a function of the original's size in bytes.
CUTS = {"t512": lambda size: 512, "t33": lambda size: size // 3, "t66": lambda size: 2 * size // 3}

#: Bytes inverted in each of the three runs of a flipped copy.
FLIP_RUN_BYTES = 64

#: Seconds the whole damaged run may take before the test gives up on it (a hang guard).
RUN_TIMEOUT_S = 1200


def _damage(corpus_dir: Path, evidence: Path) -> dict[str, Path]:
    """Damaged copies of the corpus files, keyed by copy name, mapped to their original."""
    evidence.mkdir()
    originals: dict[str, Path] = {}
    for kind in ("pst", "msg", "mbox"):
        for original in sorted((corpus_dir / kind).iterdir()):
            data = original.read_bytes()
            for label, cut in CUTS.items():
                copy = evidence / f"{original.stem}.{label}{original.suffix}"
                copy.write_bytes(data[: cut(len(data))])
                originals[copy.name] = original
            flipped = bytearray(data)
            for start in (len(data) // 4, len(data) // 2, 3 * len(data) // 4):
                for index in range(start, min(start + FLIP_RUN_BYTES, len(data))):
                    flipped[index] ^= 0xFF
            copy = evidence / f"{original.stem}.flip{original.suffix}"
            copy.write_bytes(bytes(flipped))
            originals[copy.name] = original
    return originals


def _odd_files(evidence: Path) -> None:
    noise = random.Random(20241204)
    (evidence / "empty.pst").write_bytes(b"")
    (evidence / "noise.pst").write_bytes(bytes(noise.getrandbits(8) for _ in range(65_536)))
    (evidence / "noise.msg").write_bytes(bytes(noise.getrandbits(8) for _ in range(65_536)))
    (evidence / "folder.pst").mkdir()
    (evidence / "folder.pst" / "inside.eml").write_bytes(
        b"From: a@acme-corp.com\r\nTo: b@globex-ind.com\r\nSubject: inside a folder\r\n"
        b"Date: Mon, 1 Apr 2024 10:00:00 +0000\r\nMessage-ID: <in@acme-corp.com>\r\n\r\nx\r\n"
    )


def _ndjson_documents(path: Path) -> list[dict[str, Any]]:
    lines = path.read_text("utf-8").splitlines() if path.exists() else []
    return [json.loads(line) for line in lines[1::2]]


def _per_file_messages(case_dir: Path) -> Counter[str]:
    return Counter(
        Path(d["inbec"]["evidence"]["path"]).name
        for d in _ndjson_documents(case_dir / "messages.ndjson")
    )


def _items_per_file(summary: dict[str, Any]) -> Counter[str]:
    return Counter(
        {Path(e["path"]).name: e["messages"] + e["non_mail_items"] for e in summary["evidence"]}
    )


@pytest.mark.skipif(sys.platform != "linux", reason="the PST worker tests run on Linux")
def test_damaged_corpus_copies(corpus_dir: Path, tmp_path: Path) -> None:
    evidence = tmp_path / "evidence"
    originals = _damage(corpus_dir, evidence)
    _odd_files(evidence)
    out = tmp_path / "case"
    command = [sys.executable, "-m", "inbec_export", "analyze", str(evidence), "-o", str(out)]
    command += ["--legit", "acme-corp.com"]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]

    summary = json.loads((out / "summary.json").read_text("utf-8"))
    assert summary["status"] == "complete"
    totals = summary["totals"]
    # Nothing lost: every message read is written, and each problem is counted once.
    documents = _ndjson_documents(out / "messages.ndjson")
    assert totals["messages_read"] == totals["messages_written"] == len(documents)
    failures = [json.loads(line) for line in (out / "failures.ndjson").open(encoding="utf-8")]
    assert totals["items_failed"] == len(failures) > 0

    # Each problem is one line naming file and item, the same line the failure list gives.
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    expected = []
    for failure in failures:
        where = (
            failure["file"]
            if failure["item"] is None
            else (f"{failure['file']} [{failure['item']}]")
        )
        expected.append(f"warning: {where}: {failure['reason']}")
    assert Counter(warnings) == Counter(expected)
    assert all(str(evidence) in line for line in warnings)
    assert [line for line in result.stderr.splitlines() if line.strip()] == warnings

    by_file = {f["file"]: f["reason"] for f in failures if f["item"] is None}
    assert by_file[str(evidence / "empty.pst")] == "empty file"
    for name in ("noise.pst", "noise.msg"):
        assert by_file[str(evidence / name)].startswith("named like evidence but not a PST/OST")
    # A folder named like a PST is a folder: walked, its message read.
    assert _per_file_messages(out)["inside.eml"] == 1
    # Every damaged copy was looked at: opened, listed as failed, or (cut to the same
    # first bytes as another copy) listed as the same content as the one read.
    repeats = {
        Path(s["path"]).name for s in summary["skipped_files"] if "same content" in s["reason"]
    }
    seen = {Path(e["path"]).name for e in summary["evidence"]} | {
        Path(f["file"]).name for f in failures
    }
    assert set(originals) <= seen | repeats
    assert not seen & repeats

    # A damaged copy never gives more items than its original (a non-mail item whose
    # class is lost is read as mail, so messages and non-mail items count together).
    baseline = tmp_path / "baseline"
    baseline_summary = analyze(
        sorted(set(originals.values())), CaseContext(case_id="baseline"), baseline
    )
    original_items = _items_per_file(baseline_summary)
    damaged_items = _items_per_file(summary)
    for copy, original in originals.items():
        assert damaged_items[copy] <= original_items[original.name], copy
    damaged_counts = _per_file_messages(out)
    # The cut at two thirds still gives messages from most files: reading goes on after
    # the damage, it does not stop at the first bad item.
    kept = [damaged_counts[c] for c in originals if ".t66." in c]
    assert sum(kept) > 0


def _nobody() -> tuple[int, int]:
    entry = pwd.getpwnam("nobody")
    return entry.pw_uid, entry.pw_gid


@pytest.fixture
def shared_folder() -> Iterator[Path]:
    """A folder any user may enter (pytest's own temporary folders are root's only)."""
    folder = Path(tempfile.mkdtemp(prefix="inbec-unreadable-"))
    folder.chmod(0o777)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_unreadable_evidence_file_is_one_failure(shared_folder: Path) -> None:
    folder = shared_folder
    evidence = folder / "evidence"
    evidence.mkdir()
    readable = evidence / "ok.eml"
    readable.write_bytes(
        b"From: a@acme-corp.com\r\nTo: b@globex-ind.com\r\nSubject: fine\r\n"
        b"Date: Mon, 1 Apr 2024 10:00:00 +0000\r\nMessage-ID: <ok@acme-corp.com>\r\n\r\nbody\r\n"
    )
    locked = evidence / "locked.eml"
    locked.write_bytes(readable.read_bytes())
    locked.chmod(0o000)
    for path in (evidence, readable):
        path.chmod(0o755 if path.is_dir() else 0o644)
    out = folder / "case"
    if os.geteuid() == 0:
        # Root reads any file: drop to nobody in a forked child for the run itself.
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 1
            try:
                uid, gid = _nobody()
                os.setgroups([])
                os.setgid(gid)
                os.setuid(uid)
                analyze([evidence], CaseContext(case_id="locked"), out)
                code = 0
            except BaseException as exc:
                sys.stderr.write(f"analyze as nobody failed: {exc!r}\n")
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    else:
        analyze([evidence], CaseContext(case_id="locked"), out)
    summary = json.loads((out / "summary.json").read_text("utf-8"))
    assert summary["totals"]["messages_written"] == 1
    assert summary["failures"] == [
        {"file": str(locked), "item": None, "reason": "cannot open: Permission denied"}
    ]
    assert summary["failed_files"] == [str(locked)]
