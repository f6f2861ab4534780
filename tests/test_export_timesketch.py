"""`inbec export timesketch` against a real Timesketch server started by the test suite."""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sample_helpers import analyzed_sample_case
from typer.testing import CliRunner

from inbec_export.cli import app
from inbec_export.errors import UsageError
from inbec_export.sample import generator as story
from inbec_export.sinks.search import ExportError
from inbec_export.sinks.timesketch import (
    ClientConfig,
    TimesketchTarget,
    count_events,
    default_timeline_name,
    export_timesketch,
    read_client_config,
)

pytestmark = pytest.mark.server
runner = CliRunner()
api_client = pytest.importorskip("timesketch_api_client.client")


@pytest.fixture(scope="module")
def sample_case(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return analyzed_sample_case(tmp_path_factory.mktemp("sample-timesketch"))


def _sketch_name() -> str:
    return f"inbec test {datetime.now(UTC):%Y%m%dT%H%M%S%f}"


def _events(case_dir: Path) -> list[dict[str, Any]]:
    lines = (case_dir / "timeline.jsonl").read_text("utf-8").splitlines()
    return [json.loads(line) for line in lines]


def _target(server: Any, **kwargs: Any) -> TimesketchTarget:
    return TimesketchTarget(server.url, server.username, server.password, **kwargs)


def _export(case_dir: Path, password: str, *options: str) -> Any:
    """``inbec export timesketch --from-case CASE_DIR OPTIONS -q`` with the password in the
    environment, as a user would give it."""
    return runner.invoke(
        app,
        ["export", "timesketch", "--from-case", str(case_dir), *options, "-q"],
        env={"INBEC_TIMESKETCH_PASSWORD": password},
    )


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # requests would send even 127.0.0.1 through a proxy configured in the environment.
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


def test_sample_case_upload(timesketch_server: Any, sample_case: Path) -> None:
    name = _sketch_name()
    result = _export(
        sample_case,
        timesketch_server.password,
        "--url",
        timesketch_server.url,
        "--user",
        timesketch_server.username,
        "--sketch-name",
        name,
    )
    assert result.exit_code == 0, result.output
    events = count_events(sample_case)
    assert events == len(_events(sample_case)) == 48  # 14 sent, 12 delivered, 22 findings
    assert f"sent {events} events, the server holds {events}" in " ".join(result.output.split())
    assert timesketch_server.password not in result.output

    api = api_client.TimesketchApi(
        timesketch_server.url, timesketch_server.username, timesketch_server.password
    )
    [sketch] = [s for s in api.list_sketches() if s.name == name]
    [timeline] = sketch.list_timelines()
    assert timeline.name == "sample: 2024-04-02_0714_Invoice_INV-2024-0417.eml +8 more"
    found = sketch.explore(
        query_string=f'email_message_id:"{story.MSGID_CFO_IMPERSONATION}"',
        return_fields="datetime,timestamp,timestamp_desc,inbec_doc_id",
    )["objects"]
    times = sorted((h["_source"]["datetime"], h["_source"]["timestamp_desc"]) for h in found)
    assert times == [
        ("2024-04-11T15:54:25+00:00", "Message sent (Date header)"),
        ("2024-04-11T15:54:29+00:00", "Message delivered"),
    ]
    assert {h["_source"]["timestamp"] for h in found} == {1712850865000000, 1712850869000000}
    # The events carry their ECS document's id, so the two stores join.
    ids = {
        e["inbec_doc_id"]
        for e in _events(sample_case)
        if e.get("email_message_id") == story.MSGID_CFO_IMPERSONATION
    }
    assert {h["_source"]["inbec_doc_id"] for h in found} == ids
    # A search for the lookalike domain finds its messages and its findings.
    lookalike = sketch.explore(
        query_string=f'"{story.LOOKALIKE_DOMAIN}"', return_fields="message,data_type"
    )["objects"]
    expected = [e for e in _events(sample_case) if story.LOOKALIKE_DOMAIN in json.dumps(e)]
    assert len(lookalike) == len(expected) > 0


def test_second_upload_adds_no_timeline(timesketch_server: Any, sample_case: Path) -> None:
    name = _sketch_name()
    first = export_timesketch(_target(timesketch_server, sketch_name=name), sample_case)
    second = export_timesketch(_target(timesketch_server, sketch_name=name), sample_case)
    assert first.uploaded and first.held == first.events
    assert not second.uploaded and second.held == first.held
    assert second.sketch_id == first.sketch_id
    assert "already there, nothing sent" in second.line()
    api = api_client.TimesketchApi(
        timesketch_server.url, timesketch_server.username, timesketch_server.password
    )
    assert [t.name for t in api.get_sketch(first.sketch_id).list_timelines()] == [
        first.timeline_name
    ]
    # The same name with different events is refused, not doubled.
    other = sample_case.parent / "other"
    other.mkdir()
    for child in sample_case.iterdir():
        if child.is_file():
            (other / child.name).write_bytes(child.read_bytes())
    lines = (other / "timeline.jsonl").read_text("utf-8").splitlines()
    (other / "timeline.jsonl").write_text("\n".join(lines[:-1]) + "\n", encoding="utf-8")
    with pytest.raises(ExportError, match="give --timeline-name for a new timeline"):
        export_timesketch(
            _target(
                timesketch_server, sketch_id=first.sketch_id, timeline_name=first.timeline_name
            ),
            other,
        )


def test_wrong_password_is_one_clear_line(timesketch_server: Any, sample_case: Path) -> None:
    result = _export(
        sample_case,
        "wrong-password-123",
        "--url",
        timesketch_server.url,
        "--user",
        timesketch_server.username,
        "--sketch",
        "1",
    )
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == [
        f"error: Timesketch at {timesketch_server.url} refused the login of "
        f"'{timesketch_server.username}': check --user and the password (--password or "
        "$INBEC_TIMESKETCH_PASSWORD)"
    ]


def test_unreachable_server_is_one_clear_line(sample_case: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = _export(
        sample_case, "pw", "--url", f"http://127.0.0.1:{port}", "--user", "x", "--sketch", "1"
    )
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"error: cannot connect to Timesketch at http://127.0.0.1:{port}: is the server "
        "running, and are the host and port right?"
    )


def test_default_timeline_name() -> None:
    summary = {"case": {"id": "bec-7"}, "evidence": [{"path": "/x/b.pst"}, {"path": "/y/a.msg"}]}
    assert default_timeline_name(summary) == "bec-7: a.msg +1 more"
    assert default_timeline_name({"case": {"id": "c"}, "evidence": []}) == "c"


def test_sketch_without_write_permission_is_one_clear_line(
    timesketch_server: Any, sample_case: Path
) -> None:
    if timesketch_server.reader is None:
        pytest.skip("the Timesketch server was given by URL: no second user to test with")
    reader, reader_password = timesketch_server.reader
    api = api_client.TimesketchApi(
        timesketch_server.url, timesketch_server.username, timesketch_server.password
    )
    sketch = api.create_sketch(_sketch_name())
    assert sketch.add_to_acl(user_list=[reader], permissions=["read"])
    result = _export(
        sample_case,
        reader_password,
        "--url",
        timesketch_server.url,
        "--user",
        reader,
        "--sketch",
        str(sketch.id),
    )
    assert result.exit_code == 1
    assert " ".join(result.output.split()) == (
        f"error: user '{reader}' may not write to sketch {sketch.id} ({sketch.name}): ask "
        "its owner for write permission, or use another sketch"
    )
    assert sketch.list_timelines() == []


def test_client_config_gives_url_and_user(
    timesketch_server: Any, sample_case: Path, tmp_path: Path
) -> None:
    rc = tmp_path / "timesketchrc"
    rc.write_text(
        f"[timesketch]\nhost_uri = {timesketch_server.url}\n"
        f"username = {timesketch_server.username}\nauth_mode = userpass\n",
        encoding="utf-8",
    )
    name = _sketch_name()
    result = _export(
        sample_case,
        timesketch_server.password,
        "--client-config",
        str(rc),
        "--sketch-name",
        name,
        "--timeline-name",
        "from the client config",
    )
    assert result.exit_code == 0, result.output
    events = count_events(sample_case)
    assert " ".join(result.output.split()).endswith(
        f"'from the client config' in sketch {_sketch_id(timesketch_server, name)} ({name}): "
        f"sent {events} events, the server holds {events}"
    )


def _sketch_id(server: Any, name: str) -> int:
    api = api_client.TimesketchApi(server.url, server.username, server.password)
    [sketch] = [s for s in api.list_sketches() if s.name == name]
    return int(sketch.id)


def test_client_config_errors(tmp_path: Path) -> None:
    rc = tmp_path / "rc"
    rc.write_text("[timesketch]\nhost_uri = https://ts\nusername = a\nverify = no\n", "utf-8")
    assert read_client_config(rc) == ClientConfig("https://ts", "a", verify_tls=False)
    rc.write_text("[timesketch]\nhost_uri = https://ts\nauth_mode = oauth\n", "utf-8")
    with pytest.raises(UsageError, match="auth_mode 'oauth' is not supported"):
        read_client_config(rc)
    rc.write_text("[other]\nhost_uri = https://ts\n", "utf-8")
    with pytest.raises(UsageError, match=r"no \[timesketch\] section"):
        read_client_config(rc)
    with pytest.raises(UsageError, match="cannot read it"):
        read_client_config(tmp_path / "missing")
    result = runner.invoke(
        app,
        ["export", "timesketch", "--from-case", str(tmp_path), "--client-config", str(rc)],
    )
    assert result.exit_code == 2
    assert "no [timesketch] section" in result.output
