"""What a user sees in a terminal, a pipe or a log: whole lines, one per problem, no
library noise, no secret, and the case folder never mistaken for evidence."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from inbec_export.sample.generator import SampleCase, generate_sample_case

#: A loopback port nothing listens on (discard): every connection is refused.
DEAD_URL = "http://127.0.0.1:9"


def _inbec(*arguments: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "inbec_export", *arguments]
    # A pipe, as in a script or CI: no terminal size (the test runner may set COLUMNS).
    env = {name: value for name, value in os.environ.items() if name not in {"COLUMNS", "LINES"}}
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> SampleCase:
    return generate_sample_case(tmp_path_factory.mktemp("sample") / "sample")


@pytest.fixture(scope="module")
def case_dir(sample: SampleCase, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("case") / "case"
    result = _inbec(
        "analyze",
        str(sample.evidence_dir),
        "--legit-file",
        str(sample.legit_file),
        "-q",
        "-o",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    return out


@pytest.mark.parametrize(
    "arguments",
    [
        ["export", "elasticsearch", "--url", DEAD_URL, "--user", "elastic", "--password", "x"],
        ["export", "opensearch", "--url", DEAD_URL],
        [
            "export",
            "timesketch",
            "--url",
            DEAD_URL,
            "--user",
            "a",
            "--password",
            "b",
            "--sketch",
            "1",
        ],
    ],
    ids=["elasticsearch", "opensearch", "timesketch"],
)
def test_an_unreachable_server_is_exactly_one_line(case_dir: Path, arguments: list[str]) -> None:
    # Without -q: the HTTP clients' own retry warnings and tracebacks stay out.
    result = _inbec(*arguments, "--from-case", str(case_dir))
    assert result.returncode == 1
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("error: cannot connect to ")
    assert line.endswith(f"{DEAD_URL}: is the server running, and are the host and port right?")


@pytest.mark.parametrize(
    "command",
    [
        ["export", "opensearch"],
        ["export", "timesketch", "--sketch", "1"],
        ["dashboards", "install"],
    ],
    ids=["opensearch", "timesketch", "dashboards"],
)
def test_a_password_in_the_url_is_refused_and_not_repeated(
    case_dir: Path, command: list[str]
) -> None:
    where = ["--kibana"] if command[0] == "dashboards" else ["--from-case", str(case_dir), "--url"]
    result = _inbec(*command, *where, "http://analyst:hunter2@127.0.0.1:9")
    assert result.returncode == 2
    assert "hunter2" not in result.stdout + result.stderr
    assert result.stderr.strip() == (
        "error: --url: leave the user and password out of the URL; give --user, and the "
        "password with --password or the environment"
    )


def test_timesketch_without_a_password_is_a_usage_error(case_dir: Path) -> None:
    result = _inbec(
        "export",
        "timesketch",
        "--from-case",
        str(case_dir),
        "--url",
        DEAD_URL,
        "--user",
        "analyst",
        "--sketch",
        "1",
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: give the password of --user with --password or $INBEC_TIMESKETCH_PASSWORD"
    )


def test_piped_output_keeps_whole_lines(case_dir: Path, sample: SampleCase) -> None:
    rules = _inbec("rules")
    assert rules.returncode == 0
    assert "display-name-impersonation" in rules.stdout
    assert "return-path-mismatch" in rules.stdout
    out = case_dir.parent / "again"
    result = _inbec(
        "analyze", str(sample.evidence_dir), "--legit-file", str(sample.legit_file), "-o", str(out)
    )
    assert result.returncode == 0
    # No progress bar and no empty line on stderr when it is not a terminal.
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    summary = json.loads((out / "summary.json").read_text("utf-8"))
    [intrusion] = [f for f in summary["key_findings"] if f["rule_id"] == "thread-intrusion"]
    assert f"  critical thread-intrusion: {intrusion['reason']}" in lines
    severities = summary["findings_by_severity"]
    assert (
        f"Findings: {summary['totals']['findings']} (critical {severities['critical']}, "
        f"high {severities['high']}, medium {severities['medium']}, low {severities['low']})"
        in lines
    )
    assert lines[-1] == (
        f"Case folder: {out} (report.html, summary.json, timeline.csv, findings.ndjson, "
        "messages.ndjson, timeline.jsonl)"
    )


def test_a_case_folder_inside_the_evidence_is_not_read(sample: SampleCase, tmp_path: Path) -> None:
    evidence = tmp_path / "evidence"
    shutil.copytree(sample.evidence_dir, evidence)
    out = evidence / "case"
    arguments = ["analyze", str(evidence), "--legit-file", str(sample.legit_file), "-q"]
    first = _inbec(*arguments, "-o", str(out))
    assert first.returncode == 0, first.stderr
    before = (out / "summary.json").read_bytes()
    second = _inbec(*arguments, "-o", str(out))
    assert second.returncode == 0, second.stderr
    # The second run read the same evidence, not its own output: the same summary.
    assert (out / "summary.json").read_bytes() == before
    summary = json.loads(before)
    assert summary["totals"]["files_skipped"] == 0
    assert summary["totals"]["messages_read"] == sample.message_count
    # An old case folder of another run beside the evidence is not read either, but it
    # is listed: nothing under the evidence goes unaccounted for.
    loud = [argument for argument in arguments if argument != "-q"]
    elsewhere = _inbec(*loud, "-o", str(tmp_path / "elsewhere"))
    assert elsewhere.returncode == 0
    assert elsewhere.stderr == f"warning: {out}: a case folder of inbec-export; not read\n"
    other = json.loads((tmp_path / "elsewhere" / "summary.json").read_text("utf-8"))
    assert other["skipped_files"] == [
        {"path": str(out), "reason": "a case folder of inbec-export: not read as evidence"}
    ]
    assert other["totals"] == {**summary["totals"], "files_skipped": 1}


def test_a_lone_summary_json_does_not_hide_the_evidence_beside_it(
    sample: SampleCase, tmp_path: Path
) -> None:
    """Only a folder with the tool's summary and its messages file is a case folder: a
    summary.json naming the tool among evidence hides nothing."""
    evidence = tmp_path / "evidence"
    shutil.copytree(sample.evidence_dir, evidence)
    (evidence / "summary.json").write_text('{"tool":{"name":"inbec-export"}}', "utf-8")
    out = tmp_path / "case"
    result = _inbec(
        "analyze", str(evidence), "--legit-file", str(sample.legit_file), "-q", "-o", str(out)
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text("utf-8"))
    assert summary["totals"]["messages_read"] == sample.message_count
    assert summary["skipped_files"] == [
        {"path": str(evidence / "summary.json"), "reason": "not a PST/OST, MSG, EML or mbox file"}
    ]


def test_small_usage_errors_say_where(tmp_path: Path) -> None:
    legit = tmp_path / "legit.txt"
    legit.write_text("acme-corp.com\nnot a domain\n", encoding="utf-8")
    message = tmp_path / "m.eml"
    message.write_bytes(b"From: a@acme-corp.com\r\nSubject: x\r\n\r\nbody\r\n")
    result = _inbec("analyze", str(message), "--legit-file", str(legit), "-o", str(tmp_path / "c"))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: {legit}, line 2: 'not a domain' is not a domain name: give the registrable "
        "domain with its suffix, e.g. acme-corp.com"
    )
    result = _inbec("mappings", str(tmp_path / "m"), "--prefix", "logs-x")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: --prefix 'logs-x': names under logs-*-* belong to Elastic's managed templates; "
        "choose another prefix"
    )
    assert not (tmp_path / "m").exists()
    empty = tmp_path / "empty.ndjson"
    empty.write_text("", encoding="utf-8")
    result = _inbec("dashboards", "check", str(empty))
    assert result.returncode == 1
    assert "no saved object in the file: nothing to import" in result.stdout + result.stderr
    config = tmp_path / "timesketchrc"
    config.write_text("host_uri = http://x\n", encoding="utf-8")
    result = _inbec(
        "export", "timesketch", "--from-case", str(tmp_path), "--client-config", str(config)
    )
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith(f"error: Timesketch client config {config}: cannot read it (File ")
