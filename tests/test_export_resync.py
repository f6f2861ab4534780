"""A case analyzed again, exported again: the indices end up holding what the case folder
holds, against real OpenSearch and Elasticsearch nodes started by the test suite.

The sample case is analyzed twice into two case folders of one case: with one legitimate
domain (``narrow``) and with two (``wide``, which adds findings and changes the severity
and reason of others under the same ids). Exporting one after the other must replace the
documents whose content changed, leave the others alone, count what is in the indices but
not in the case folder and, with ``--delete-stale``, delete it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from inbec_export.case import CaseContext
from inbec_export.cli import app
from inbec_export.pipeline import analyze
from inbec_export.sample.generator import generate_sample_case
from inbec_export.sinks.search import FLAVOURS, Connection, export_case

pytestmark = pytest.mark.server
runner = CliRunner()

CASE_ID = "resync"

# ``server``: (flavour, URL) of each real search server (tests/servers/fixtures.py).


@pytest.fixture(scope="module")
def two_analyses(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The sample evidence analyzed with acme-corp.com (narrow), then also with
    globex-ind.com as a legitimate domain (wide), under one case id."""
    root = tmp_path_factory.mktemp("resync")
    sample = generate_sample_case(root / "sample")
    narrow, wide = root / "narrow", root / "wide"
    analyze(
        [sample.evidence_dir],
        CaseContext(case_id=CASE_ID, legit_domains=("acme-corp.com",)),
        narrow,
    )
    analyze(
        [sample.evidence_dir],
        CaseContext(case_id=CASE_ID, legit_domains=("acme-corp.com", "globex-ind.com")),
        wide,
    )
    return narrow, wide


def _documents(case_dir: Path, kind: str) -> dict[str, dict[str, Any]]:
    lines = (case_dir / f"{kind}.ndjson").read_text("utf-8").splitlines()
    return {
        json.loads(action)["create"]["_id"]: json.loads(document)
        for action, document in zip(lines[0::2], lines[1::2], strict=True)
    }


def _held(client: Any, index: str) -> dict[str, dict[str, Any]]:
    """Every document of ``index`` by id, as stored."""
    client.indices.refresh(index=index)
    hits = client.search(index=index, body={"query": {"match_all": {}}, "size": 1000})
    return {hit["_id"]: hit["_source"] for hit in hits["hits"]["hits"]}


def _export(flavour: str, url: str, case_dir: Path, prefix: str, *extra: str) -> Any:
    return runner.invoke(
        app,
        [
            "export",
            flavour,
            "--from-case",
            str(case_dir),
            "--url",
            url,
            "--prefix",
            prefix,
            *extra,
        ],
    )


def test_the_analyses_differ_as_the_tests_below_expect(two_analyses: tuple[Path, Path]) -> None:
    narrow, wide = two_analyses
    for kind, (shared, changed, only_wide) in {
        "messages": (14, 5, 0),
        "findings": (14, 7, 8),
    }.items():
        old, new = _documents(narrow, kind), _documents(wide, kind)
        assert len(old.keys() & new.keys()) == shared
        assert sum(1 for i in old.keys() & new.keys() if old[i] != new[i]) == changed
        assert len(new.keys() - old.keys()) == only_wide
        assert not old.keys() - new.keys()


def test_reanalysis_is_exported_as_it_is(
    server: tuple[str, str], two_analyses: tuple[Path, Path]
) -> None:
    flavour, url = server
    narrow, wide = two_analyses
    prefix = f"rs1{flavour[:2]}"
    client = FLAVOURS[flavour].client(Connection(url))
    messages, findings = f"{prefix}-messages-{CASE_ID}", f"{prefix}-findings-{CASE_ID}"
    title = FLAVOURS[flavour].name

    first = _export(flavour, url, narrow, prefix, "-q")
    assert first.exit_code == 0, first.output
    assert f"{title}: sent 28, created 28, updated 0, unchanged 0, rejected 0" in first.output

    # The wider analysis: 8 new findings, 12 documents changed (5 messages, 7 findings).
    second = _export(flavour, url, wide, prefix, "-q")
    assert second.exit_code == 0, second.output
    assert f"{title}: sent 36, created 8, updated 12, unchanged 16, rejected 0" in (second.output)
    assert "not in this case folder" not in second.output
    assert _held(client, messages) == _documents(wide, "messages")
    assert _held(client, findings) == _documents(wide, "findings")
    severities = {
        doc_id: doc["event"]["severity"] for doc_id, doc in _held(client, findings).items()
    }
    assert severities == {
        doc_id: doc["event"]["severity"] for doc_id, doc in _documents(wide, "findings").items()
    }

    # Back to the narrow analysis: its 12 documents go back, the 8 wider findings are
    # not in its case folder and are counted, not deleted.
    third = _export(flavour, url, narrow, prefix)
    assert third.exit_code == 0, third.output
    output = " ".join(third.output.split())
    assert (
        f"{title}: sent 28, created 0, updated 12, unchanged 16, rejected 0, "
        "not in the case folder 8" in output
    )
    assert (
        f"warning: 8 document(s) of case '{CASE_ID}' in the indices are not in this case "
        "folder (from an earlier analysis, or another case folder of the case): "
        "--delete-stale removes them" in output
    )
    assert _held(client, messages) == _documents(narrow, "messages")
    held_findings = _held(client, findings)
    assert len(held_findings) == 22
    wider_only = _documents(wide, "findings").keys() - _documents(narrow, "findings").keys()
    assert {i: d for i, d in held_findings.items() if i not in wider_only} == _documents(
        narrow, "findings"
    )

    # --delete-stale removes them: the indices hold exactly the case folder.
    fourth = _export(flavour, url, narrow, prefix, "-q", "--delete-stale")
    assert fourth.exit_code == 0, fourth.output
    assert (
        f"{title}: sent 28, created 0, updated 0, unchanged 28, rejected 0, deleted 8"
        in " ".join(fourth.output.split())
    )
    assert _held(client, messages) == _documents(narrow, "messages")
    assert _held(client, findings) == _documents(narrow, "findings")

    # Unchanged again: nothing created, replaced, counted or deleted.
    fifth = export_case(FLAVOURS[flavour], Connection(url), narrow, CASE_ID, prefix)
    assert (fifth.created, fifth.updated, fifth.unchanged, fifth.rejected) == (0, 0, 28, 0)
    assert (fifth.stale, fifth.deleted, fifth.unsent) == (0, 0, 0)


def test_documents_of_other_case_folders_are_kept_without_the_option(
    opensearch_url: str, two_analyses: tuple[Path, Path], tmp_path: Path
) -> None:
    # A document another case folder of the case put there (here: one written by hand
    # under a new id) is counted as not in this case folder and stays until asked.
    narrow, _ = two_analyses
    prefix = "rs2"
    connection = Connection(opensearch_url)
    client = FLAVOURS["opensearch"].client(connection)
    export_case(FLAVOURS["opensearch"], connection, narrow, CASE_ID, prefix)
    index = f"{prefix}-messages-{CASE_ID}"
    some_id, document = next(iter(_documents(narrow, "messages").items()))
    client.index(index=index, id="from-another-case-folder", body=document, refresh=True)
    kept = export_case(FLAVOURS["opensearch"], connection, narrow, CASE_ID, prefix)
    assert (kept.unchanged, kept.stale, kept.deleted) == (28, 1, 0)
    assert client.get(index=index, id="from-another-case-folder")["_source"] == document
    pruned = export_case(
        FLAVOURS["opensearch"], connection, narrow, CASE_ID, prefix, delete_stale=True
    )
    assert (pruned.unchanged, pruned.stale, pruned.deleted) == (28, 1, 1)
    assert set(_held(client, index)) == set(_documents(narrow, "messages"))
    assert some_id in _held(client, index)
