"""Chain of custody: evidence is opened read-only, hashed into summary.json, and its bytes
and modification times are the same after every command that reads it."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from inbec_export.sample.generator import generate_sample_case

#: Write access flags of ``os.open``: none may reach an evidence file.
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC

#: Runs the command line with an audit hook that logs every open of an evidence file.
AUDITED_CLI = """
import json, os, sys
evidence, log = sys.argv[1], sys.argv[2]
del sys.argv[1:3]
opens = []
def hook(event, args):
    if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        path = os.fsdecode(args[0])
        if path.startswith(evidence):
            opens.append([path, args[1], args[2]])
sys.addaudithook(hook)
from inbec_export.cli import main
try:
    main()
finally:
    with open(log, "w") as handle:
        json.dump(opens, handle)
"""


def _fingerprint(folder: Path) -> dict[str, tuple[str, int, int]]:
    """SHA-256, size and modification time (ns) of every file under ``folder``."""
    prints = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        stat = path.stat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        prints[str(path)] = (digest, stat.st_size, stat.st_mtime_ns)
    return prints


@pytest.fixture
def evidence(corpus_dir: Path, tmp_path: Path) -> Path:
    """The sample case's evidence with one corpus file of each binary format beside it."""
    sample = generate_sample_case(tmp_path / "sample")
    folder = tmp_path / "evidence"
    shutil.copytree(sample.evidence_dir, folder)
    for name in ("pst/aranetic_multiple_to_cc.pst", "msg/aspose_Invitation.msg"):
        shutil.copy2(corpus_dir / name, folder / Path(name).name)
    return folder


def _run(evidence: Path, log: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", AUDITED_CLI, str(evidence), str(log), *arguments]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)


def test_every_command_leaves_evidence_untouched(evidence: Path, tmp_path: Path) -> None:
    before = _fingerprint(evidence)
    out = tmp_path / "case"
    legit = ["--legit", "acme-corp.com", "--legit", "globex-ind.com"]
    commands: list[tuple[list[str], int]] = [
        (["analyze", str(evidence), *legit, "-q", "-o", str(out)], 0),
        # A second run over the same folder (the re-run after an interruption).
        (["analyze", str(evidence), *legit, "-q", "-o", str(out)], 0),
        (["report", str(out)], 0),
        # Exports that analyze the evidence first, to servers that are not there.
        (
            [
                "export",
                "opensearch",
                str(evidence),
                *legit,
                "-q",
                "-o",
                str(tmp_path / "case-os"),
                "--url",
                "http://127.0.0.1:9",
            ],
            1,
        ),
        (
            [
                "export",
                "timesketch",
                str(evidence),
                *legit,
                "-q",
                "-o",
                str(tmp_path / "case-ts"),
                "--url",
                "http://127.0.0.1:9",
                "--user",
                "analyst",
                "--password",
                "not-a-real-password",
                "--sketch",
                "1",
            ],
            1,
        ),
    ]
    for number, (arguments, status) in enumerate(commands):
        log = tmp_path / f"opens-{number}.json"
        result = _run(evidence, log, *arguments)
        assert result.returncode == status, (arguments[0], result.stderr[-2000:])
        opens: list[list[Any]] = json.loads(log.read_text("utf-8"))
        if arguments[0] != "report":
            # Each evidence file was opened (to hash it, sniff it and read it)...
            assert {path for path, _, _ in opens} >= set(before), arguments[0]
        for path, mode, flags in opens:
            # ...and only ever for reading.
            if isinstance(mode, str):
                assert not set(mode) & set("wax+"), (path, mode)
            assert not (flags or 0) & WRITE_FLAGS, (path, flags)
        assert _fingerprint(evidence) == before, arguments[0]

    summary = json.loads((out / "summary.json").read_text("utf-8"))
    recorded = {entry["path"]: entry["sha256"] for entry in summary["evidence"]}
    assert recorded == {path: digest for path, (digest, _, _) in before.items()}
