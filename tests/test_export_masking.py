"""Secrets are masked where they can stand, and the messages stay readable.

A password masked wherever its text occurs garbles the message and gives itself away
through the gaps (``p`` turned ``http://`` into ``htt***://``); these tests give short,
word-like and number-like passwords and check the messages come out whole, and that a
secret in a URL's user info, an Authorization header or as a whole token is still masked.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from sample_helpers import analyzed_sample_case
from typer.testing import CliRunner

from inbec_export.cli import app
from inbec_export.sinks.search import scrub_secrets

runner = CliRunner()

#: Messages as the clients and servers word them, with nothing secret in them.
PLAIN = [
    "cannot connect to http://127.0.0.1:9200: is the server running, and are the host "
    "and port right?",
    "Elasticsearch export failed: ConnectionError: Connection refused (127.0.0.1:9200)",
    "http://127.0.0.1:9200 refused the credentials (401): check --user/--password, "
    "--api-key or --bearer-token (or their environment variables)",
    "OpenSearch answered 400: search_phase_execution_exception: all shards failed",
    "user elastic may not write to sketch 3 (admin search)",
]

#: Passwords that are letters only, digits only or short: no message may change.
WORD_LIKE = ["p", "h", "search", "elastic", "password", "admin", "127", "9200", "http"]


@pytest.mark.parametrize("password", WORD_LIKE)
def test_short_and_word_like_passwords_leave_messages_whole(password: str) -> None:
    for message in PLAIN:
        assert scrub_secrets(message, [password]) == message


@pytest.mark.parametrize("password", [*WORD_LIKE, "pw-Zq81-elastic", "Xk9-long-enough"])
def test_secrets_are_masked_where_they_stand_whatever_they_are(password: str) -> None:
    assert (
        scrub_secrets(f"GET https://elastic:{password}@127.0.0.1:9200/_bulk failed", [password])
        == "GET https://***@127.0.0.1:9200/_bulk failed"
    )
    assert (
        scrub_secrets(f"headers {{'Authorization': 'Basic {password}'}}", [password])
        == "headers {'Authorization': 'Basic ***'}"
    )
    assert (
        scrub_secrets(f"Authorization: Bearer {password}; retry", [password])
        == "Authorization: Bearer ***; retry"
    )
    assert scrub_secrets(f"login with password={password}&x=1", [password]) == (
        "login with password=***&x=1"
    )


def test_secret_looking_values_are_masked_as_whole_tokens() -> None:
    secret = "pw-Zq81-elastic"
    assert (
        scrub_secrets(f"failed: ('elastic', '{secret}') at http://127.0.0.1:9200", [secret])
        == "failed: ('elastic', '***') at http://127.0.0.1:9200"
    )
    # Inside a longer word it is not the secret standing there: left as it is.
    assert scrub_secrets(f"id x{secret}9 seen", [secret]) == f"id x{secret}9 seen"
    # Six characters of two kinds are enough; letters only need sixteen.
    assert scrub_secrets("token s3cret refused", ["s3cret"]) == "token *** refused"
    assert scrub_secrets("token secret refused", ["secret"]) == "token secret refused"
    long_word = "abcdefghijklmnopq"
    assert scrub_secrets(f"key {long_word} refused", [long_word]) == "key *** refused"
    # The longer of two overlapping secrets goes first, whole.
    assert scrub_secrets("k3y-value-2 and k3y-value", ["k3y-value", "k3y-value-2"]) == (
        "*** and ***"
    )


def _dead_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def sample_case(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return analyzed_sample_case(tmp_path_factory.mktemp("sample-masking"))


@pytest.mark.parametrize("password", ["p", "search", "127"])
def test_export_errors_stay_readable_with_a_short_password(
    sample_case: Path, password: str
) -> None:
    port = _dead_port()
    result = runner.invoke(
        app,
        [
            "export",
            "elasticsearch",
            "--from-case",
            str(sample_case),
            "--url",
            f"http://127.0.0.1:{port}",
            "--user",
            "elastic",
            "-q",
        ],
        env={"INBEC_ES_PASSWORD": password},
    )
    assert result.exit_code == 1
    output = " ".join(result.output.split())
    assert (
        f"error: cannot connect to http://127.0.0.1:{port}: is the server running, and are "
        "the host and port right?" in output
    )
    assert "***" not in output


@pytest.mark.parametrize("password", ["p", "search", "127"])
def test_dashboard_errors_stay_readable_with_a_short_password(password: str) -> None:
    port = _dead_port()
    result = runner.invoke(
        app,
        ["dashboards", "install", "--kibana", f"http://127.0.0.1:{port}", "--user", "elastic"],
        env={"INBEC_DASHBOARDS_PASSWORD": password},
    )
    assert result.exit_code == 1
    output = " ".join(result.output.split())
    assert f"cannot connect to http://127.0.0.1:{port}: is the server running" in output
    assert "***" not in output
