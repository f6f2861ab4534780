"""Several exporters writing into one cluster at the same time: exact counts, no duplicate.

Document ids come from the evidence (messages) and from what a finding is about
(findings), so exporters that run at once on different evidence of one case, or on the
same evidence, meet on the same ids: the bulk ``create`` of the second one is answered
409, never indexed twice, and counted as unchanged (or, for a finding that sums up each
case folder differently, replaced once and counted as updated).
"""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from inbec_export.case import CaseContext
from inbec_export.pipeline import analyze
from inbec_export.sinks.search import FLAVOURS, Connection, ExportResult, export_case

pytestmark = pytest.mark.server

#: The real servers, as (fixture, flavour).
NODES = {
    "opensearch": ("opensearch_url", "opensearch"),
    "elasticsearch8": ("elasticsearch_url", "elasticsearch"),
}

CASE_ID = "shared"


@pytest.fixture(params=sorted(NODES))
def server(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(flavour, base URL) of each real server."""
    fixture, flavour = NODES[request.param]
    return flavour, request.getfixturevalue(fixture)


@pytest.fixture(scope="module")
def two_cases(corpus_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two case folders of one case, from different evidence (PST and MSG; EML and mbox)."""
    root = tmp_path_factory.mktemp("concurrent")
    case = CaseContext(case_id=CASE_ID, legit_domains=("acme-corp.com",))
    first, second = root / "first", root / "second"
    analyze([corpus_dir / "pst", corpus_dir / "msg"], case, first)
    analyze([corpus_dir / "eml", corpus_dir / "mbox"], case, second)
    return first, second


def _ids(case_dir: Path, kind: str) -> list[str]:
    lines = (case_dir / f"{kind}.ndjson").read_text("utf-8").splitlines()
    return [json.loads(action)["create"]["_id"] for action in lines[0::2]]


def _documents(case_dir: Path, kind: str) -> dict[str, Any]:
    lines = (case_dir / f"{kind}.ndjson").read_text("utf-8").splitlines()
    return {
        json.loads(action)["create"]["_id"]: json.loads(document)
        for action, document in zip(lines[0::2], lines[1::2], strict=True)
    }


def _export_at_once(flavour: str, url: str, cases: list[Path], prefix: str) -> list[ExportResult]:
    """Export every case folder at the same time, one thread each."""

    def run(case_dir: Path) -> ExportResult:
        return export_case(FLAVOURS[flavour], Connection(url), case_dir, CASE_ID, prefix)

    with ThreadPoolExecutor(max_workers=len(cases)) as pool:
        return list(pool.map(run, cases))


def _count(flavour: str, url: str, index: str) -> int:
    client: Any = FLAVOURS[flavour].client(Connection(url))
    client.indices.refresh(index=index)
    return int(client.count(index=index)["count"])


def test_exporters_on_different_evidence(
    server: tuple[str, str], two_cases: tuple[Path, Path]
) -> None:
    flavour, url = server
    prefix = f"cc1{flavour[:2]}"
    first, second = two_cases
    results = _export_at_once(flavour, url, [first, second], prefix)
    assert [r.stopped for r in results] == [None, None]
    assert [r.rejected for r in results] == [0, 0]

    messages = _ids(first, "messages") + _ids(second, "messages")
    # Different evidence files: no message id is shared.
    assert len(set(messages)) == len(messages) == 1233
    findings = set(_ids(first, "findings")) | set(_ids(second, "findings"))
    assert _count(flavour, url, f"{prefix}-messages-{CASE_ID}") == len(messages)
    assert _count(flavour, url, f"{prefix}-findings-{CASE_ID}") == len(findings)
    # A finding about the same thing in both halves (one sender IP, one domain) is
    # created by one exporter; the other leaves it alone when its own is the same, and
    # replaces it once (updated) when it sums up its half differently.
    total = sum(r.total for r in results)
    ones, twos = _documents(first, "findings"), _documents(second, "findings")
    shared = ones.keys() & twos.keys()
    differing = sum(1 for doc_id in shared if ones[doc_id] != twos[doc_id])
    assert len(shared) == total - len(messages) - len(findings)
    assert sum(r.created for r in results) == len(messages) + len(findings)
    assert sum(r.updated for r in results) == differing
    assert sum(r.unchanged for r in results) == len(shared) - differing
    assert sum(r.deleted for r in results) == 0


def test_exporters_on_the_same_evidence(
    server: tuple[str, str], two_cases: tuple[Path, Path], tmp_path: Path
) -> None:
    flavour, url = server
    prefix = f"cc2{flavour[:2]}"
    first = two_cases[0]
    copies = [shutil.copytree(first, tmp_path / f"copy{n}") for n in range(3)]
    results = _export_at_once(flavour, url, copies, prefix)
    assert [r.stopped for r in results] == [None, None, None]
    messages, findings = _ids(first, "messages"), _ids(first, "findings")
    documents = len(messages) + len(findings)
    assert [r.total for r in results] == [documents] * 3
    assert sum(r.created for r in results) == documents
    assert sum(r.unchanged for r in results) == 2 * documents
    assert sum(r.updated for r in results) == 0
    assert sum(r.rejected for r in results) == 0
    assert _count(flavour, url, f"{prefix}-messages-{CASE_ID}") == len(messages) == 539
    assert _count(flavour, url, f"{prefix}-findings-{CASE_ID}") == len(findings)
