"""Export settings checked before any server is contacted."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from sample_helpers import analyzed_sample_case
from typer.testing import CliRunner

from inbec_export.cli import app
from inbec_export.errors import UsageError
from inbec_export.sinks.search import (
    FLAVOURS,
    Connection,
    ExportResult,
    export_case,
    index_name,
    validate_prefix,
)


def test_prefixes_that_managed_templates_would_take_are_refused() -> None:
    assert validate_prefix("inbec") == "inbec"
    assert validate_prefix("case-7_x") == "case-7_x"
    for prefix in ("logs", "logs-bec", "metrics", "traces-x"):
        with pytest.raises(UsageError, match="belong to Elastic's managed templates"):
            validate_prefix(prefix)
    for prefix in ("Inbec", "-x", "in bec", ""):
        with pytest.raises(UsageError, match="lower-case letters"):
            validate_prefix(prefix)
    assert index_name("inbec", "messages", "bec-1") == "inbec-messages-bec-1"


def test_connection_checks_and_hides_secrets(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="give http:// or https://"):
        Connection("localhost:9200")
    with pytest.raises(UsageError, match="--user needs a password"):
        Connection("http://localhost:9200", user="elastic")
    with pytest.raises(UsageError, match="no such file"):
        Connection("https://localhost:9200", ca_cert=tmp_path / "missing.pem")
    connection = Connection("https://h:9200", user="elastic", password="pw-123")
    assert repr(connection) == "Connection(url='https://h:9200', auth=basic, verify_tls=True)"
    assert connection.secrets() == ["pw-123"]


def test_result_line() -> None:
    result = ExportResult(total=10, created=5, updated=1, unchanged=2, rejected=1)
    assert result.line() == ("sent 9, created 5, updated 1, unchanged 2, rejected 1, not sent 1")
    kept = ExportResult(total=3, created=3, stale=4)
    assert kept.line() == (
        "sent 3, created 3, updated 0, unchanged 0, rejected 0, not in the case folder 4"
    )
    deleted = ExportResult(total=3, unchanged=3, stale=4, deleted=4)
    assert deleted.line() == "sent 3, created 0, updated 0, unchanged 3, rejected 0, deleted 4"


@pytest.fixture(scope="module")
def sample_case(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return analyzed_sample_case(tmp_path_factory.mktemp("sample-options"))


def _dead_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


@pytest.mark.parametrize("flavour", ["elasticsearch", "opensearch", "timesketch"])
def test_another_case_id_than_the_case_folders_is_refused(sample_case: Path, flavour: str) -> None:
    extra = ["--user", "analyst", "--sketch", "1"] if flavour == "timesketch" else []
    result = CliRunner().invoke(
        app,
        [
            "export",
            flavour,
            "--from-case",
            str(sample_case),
            "--case",
            "bec-7",
            "--url",
            _dead_url(),
            "-q",
            *extra,
        ],
        env={"INBEC_TIMESKETCH_PASSWORD": "pw-Zq88-timesketch"},
    )
    assert result.exit_code == 2
    output = " ".join(result.output.split())
    assert (
        f"error: --case 'bec-7' differs from the case id 'sample' of the documents in "
        f"{sample_case}: leave --case out, or analyze again with --case bec-7" in output
    )


def test_the_case_folders_own_case_id_is_accepted_in_any_case(sample_case: Path) -> None:
    url = _dead_url()
    result = CliRunner().invoke(
        app,
        [
            "export",
            "opensearch",
            "--from-case",
            str(sample_case),
            "--case",
            "Sample",
            "--url",
            url,
            "-q",
        ],
    )
    # Past the case id check: it goes on to the server, which is not there.
    assert result.exit_code == 1
    assert f"cannot connect to {url}" in " ".join(result.output.split())


def test_export_case_refuses_another_case_id_before_any_request(sample_case: Path) -> None:
    with pytest.raises(UsageError, match="--case 'other' differs from the case id 'sample'"):
        export_case(FLAVOURS["opensearch"], Connection(_dead_url()), sample_case, "other")


def test_bulk_requests_are_cut_by_documents_and_bytes_and_escape_odd_ids(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import json as json_module

    from inbec_export.sinks import search

    monkeypatch.setattr(search, "CHUNK_DOCUMENTS", 3)
    monkeypatch.setattr(search, "CHUNK_BYTES", 300)
    documents = [("inbec-messages-c", f"{n:040x}", '{"a":1}') for n in range(5)]
    documents.insert(2, ("inbec-messages-c", 'odd"id', '{"big":"' + "x" * 300 + '"}'))
    chunks = list(search._chunks("create", documents))
    assert [[doc_id for doc_id, _ in chunk] for chunk in chunks] == [
        [f"{0:040x}", f"{1:040x}"],
        ['odd"id'],  # over the byte limit alone: sent alone
        [f"{n:040x}" for n in (2, 3, 4)],
    ]
    action, source = chunks[1][0][1].decode().splitlines()
    assert json_module.loads(action) == {"create": {"_index": "inbec-messages-c", "_id": 'odd"id'}}
    assert json_module.loads(source) == {"big": "x" * 300}
    first = chunks[0][0][1].decode()
    assert first == (
        '{"create":{"_index":"inbec-messages-c","_id":"' + f"{0:040x}" + '"}}\n{"a":1}\n'
    )


@pytest.mark.parametrize("flavour", ["opensearch", "timesketch"])
def test_exports_from_evidence_take_workers_as_analyze_does(tmp_path: Path, flavour: str) -> None:
    import json

    from inbec_export.sample.generator import generate_sample_case

    sample = generate_sample_case(tmp_path / "sample")
    out = tmp_path / "case"
    analysis = [str(sample.evidence_dir), "--legit-file", str(sample.legit_file), "--workers", "2"]
    target = ["-o", str(out), "--url", _dead_url(), "-q"]
    if flavour == "timesketch":
        target += ["--user", "analyst", "--sketch", "1"]
    result = CliRunner().invoke(
        app,
        ["export", flavour, *analysis, *target],
        env={"INBEC_TIMESKETCH_PASSWORD": "pw-Zq88-timesketch"},
    )
    # Analyzed with two workers, then the server is not there: exit 1, not a usage error.
    assert result.exit_code == 1, result.output
    summary = json.loads((out / "summary.json").read_text("utf-8"))
    assert summary["totals"]["messages_written"] == sample.message_count
