"""Export settings checked before any server is contacted."""

from __future__ import annotations

from pathlib import Path

import pytest

from inbec_export.errors import UsageError
from inbec_export.sinks.search import Connection, ExportResult, index_name, validate_prefix


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
    result = ExportResult(total=10, created=6, present=2, rejected=1)
    assert result.line() == ("sent 9, created 6, already present 2, rejected 1, not sent 1")
