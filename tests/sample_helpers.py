"""The sample case, generated and analyzed, for tests that start from a case folder."""

from __future__ import annotations

from pathlib import Path

from inbec_export.case import CaseContext
from inbec_export.pipeline import analyze
from inbec_export.sample.generator import generate_sample_case


def analyzed_sample_case(root: Path) -> Path:
    """Generates the sample case under ``root`` and analyzes it (case id ``sample``);
    returns the case folder, ``root / "case"``."""
    sample = generate_sample_case(root / "sample")
    out = root / "case"
    analyze(
        [sample.evidence_dir],
        CaseContext(case_id="sample", legit_domains=sample.legit_domains),
        out,
    )
    return out
