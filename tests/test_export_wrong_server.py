"""Pointed at the wrong server, each export says so in one line: an https:// URL on a
server that speaks plain HTTP, and a Timesketch URL on a server that is not Timesketch.

The servers are the real OpenSearch and Elasticsearch nodes the test suite starts on
127.0.0.1 (plain HTTP, no security).
"""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner

from inbec_export.cli import app
from inbec_export.sample.generator import generate_sample_case

pytestmark = pytest.mark.server
runner = CliRunner()


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # requests would send even 127.0.0.1 through a proxy configured in the environment.
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture(scope="module")
def sample_case(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from sample_helpers import analyzed_sample_case

    return analyzed_sample_case(tmp_path_factory.mktemp("sample-wrong-server"))


def _https(url: str) -> str:
    return "https://" + url.split("://", 1)[1]


def _timesketch(case_dir: Any, url: str, *extra: str) -> Any:
    """``inbec export timesketch`` of ``case_dir`` to ``url`` as user analyst."""
    command = ["export", "timesketch", "--from-case", str(case_dir), "--url", url, "-q"]
    return runner.invoke(
        app,
        [*command, "--user", "analyst", *extra],
        env={"INBEC_TIMESKETCH_PASSWORD": "pw-Zq86-timesketch"},
    )


def _line(result: Any) -> str:
    return " ".join(result.output.split())


@pytest.mark.parametrize("insecure", [True, False], ids=["insecure", "verified"])
@pytest.mark.parametrize(
    ("flavour", "fixture"),
    [("opensearch", "opensearch_url"), ("elasticsearch", "elasticsearch_url")],
)
def test_https_url_on_a_plain_http_search_server(
    request: pytest.FixtureRequest, sample_case: Any, flavour: str, fixture: str, insecure: bool
) -> None:
    plain = request.getfixturevalue(fixture)
    url = _https(plain)
    options = ["--insecure"] if insecure else []
    result = runner.invoke(
        app,
        ["export", flavour, "--from-case", str(sample_case), "--url", url, "-q", *options],
    )
    assert result.exit_code == 1
    output = _line(result)
    assert f"error: the server at {url} does not speak TLS: use {plain}" in output
    assert "--ca-cert" not in output and "could not be verified" not in output


def test_https_url_on_a_plain_http_server_for_timesketch(
    opensearch_url: str, sample_case: Any
) -> None:
    pytest.importorskip("timesketch_api_client.client")
    url = _https(opensearch_url)
    result = _timesketch(sample_case, url, "--sketch", "1", "--insecure")
    assert result.exit_code == 1
    output = _line(result)
    assert f"error: the server at {url} does not speak TLS: use {opensearch_url}" in output
    assert "could not be verified" not in output


def test_https_url_on_a_plain_http_server_for_dashboards(opensearch_url: str) -> None:
    url = _https(opensearch_url)
    result = runner.invoke(
        app,
        ["dashboards", "install", "--opensearch-dashboards", url, "--insecure"],
    )
    assert result.exit_code == 1
    output = _line(result)
    assert f"error: the server at {url} does not speak TLS: use {opensearch_url}" in output


def test_timesketch_url_on_a_server_that_is_not_timesketch(
    opensearch_url: str, sample_case: Any
) -> None:
    pytest.importorskip("timesketch_api_client.client")
    result = _timesketch(sample_case, opensearch_url, "--sketch-name", "not here")
    assert result.exit_code == 1
    output = _line(result)
    assert (
        f"error: {opensearch_url} does not look like a Timesketch server (its login page "
        "answered 400 application/json, not Timesketch's form): check --url" in output
    )
    assert "refused the login" not in output


@pytest.mark.parametrize("password", ["p", "h", "127", "0.1"])
def test_server_answers_stay_readable_with_a_short_password(
    opensearch_url: str, password: str
) -> None:
    # OpenSearch has no saved objects API: it answers 400, and the message names it.
    result = runner.invoke(
        app,
        ["dashboards", "install", "--kibana", opensearch_url, "--user", "admin"],
        env={"INBEC_DASHBOARDS_PASSWORD": password},
    )
    assert result.exit_code == 1
    assert _line(result) == f"error: {opensearch_url} answered 400: Bad Request"


def test_evidence_analyzed_for_a_wrong_server_is_kept(opensearch_url: str, tmp_path: Any) -> None:
    # Straight from evidence: the case folder is written before the server is contacted.
    sample = generate_sample_case(tmp_path / "sample")
    out = tmp_path / "case"
    url = _https(opensearch_url)
    result = runner.invoke(
        app,
        [
            "export",
            "opensearch",
            str(sample.evidence_dir),
            "--legit-file",
            str(sample.legit_file),
            "--out",
            str(out),
            "--url",
            url,
            "-q",
        ],
    )
    assert result.exit_code == 1
    assert f"does not speak TLS: use {opensearch_url}" in _line(result)
    assert (out / "summary.json").is_file()
