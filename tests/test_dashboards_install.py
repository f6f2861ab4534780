"""``inbec dashboards install`` against a local stand-in for the saved objects import API.

The stand-in implements the contract Kibana documents for
``POST [/s/<space>]/api/saved_objects/_import``: a multipart body whose ``file`` field holds
the NDJSON, the ``kbn-xsrf`` header (``osd-xsrf`` for OpenSearch Dashboards) or 400, the
credentials or 401, and an answer of 200 with ``success``, ``successCount`` and
``errors[]`` even when single objects fail.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from typer.testing import CliRunner

from inbec_export.cli import app

runner = CliRunner()

USER = "analyst"
PASSWORD = "s3cret-Pa55word"


@dataclass
class ImportApi:
    """What the stand-in received and how it should answer."""

    xsrf_header: str = "kbn-xsrf"
    fail: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""


class _Handler(BaseHTTPRequestHandler):
    api: ImportApi

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the tests read what was received instead."""

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_POST(self) -> None:
        api = self.api
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        parts = urlsplit(self.path)
        record: dict[str, Any] = {
            "path": parts.path,
            "query": parse_qs(parts.query),
            "headers": {name.lower(): value for name, value in self.headers.items()},
        }
        api.requests.append(record)
        if not parts.path.endswith("/api/saved_objects/_import"):
            self._answer(404, {"statusCode": 404, "error": "Not Found", "message": "Not Found"})
            return
        if self.headers.get(api.xsrf_header) is None:
            message = f"Request must contain a {api.xsrf_header} header."
            self._answer(400, {"statusCode": 400, "error": "Bad Request", "message": message})
            return
        expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        if self.headers.get("Authorization") != expected:
            self._answer(401, {"statusCode": 401, "error": "Unauthorized", "message": "no"})
            return
        content_type = self.headers.get("Content-Type", "")
        message = BytesParser(policy=HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + body
        )
        files = [
            part.get_payload(decode=True)
            for part in message.iter_parts()
            if part.get_param("name", header="content-disposition") == "file"
        ]
        if len(files) != 1:
            self._answer(400, {"statusCode": 400, "error": "Bad Request", "message": "file"})
            return
        objects = [json.loads(line) for line in files[0].decode().splitlines() if line]
        record["objects"] = objects
        errors = [
            {
                "type": o["type"],
                "id": o["id"],
                "meta": {"title": o["attributes"].get("title", "")},
                "error": api.fail[o["id"]],
            }
            for o in objects
            if o["id"] in api.fail
        ]
        self._answer(
            200,
            {
                "success": not errors,
                "successCount": len(objects) - len(errors),
                "errors": errors,
                "successResults": [
                    {"type": o["type"], "id": o["id"]} for o in objects if o["id"] not in api.fail
                ],
            },
        )


@pytest.fixture
def import_api() -> Iterator[ImportApi]:
    """The stand-in, listening on 127.0.0.1 on a free port."""
    api = ImportApi()
    handler = type("Handler", (_Handler,), {"api": api})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    api.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _install(*args: str) -> Any:
    return runner.invoke(
        app,
        ["dashboards", "install", "--user", USER, *args],
        env={"INBEC_DASHBOARDS_PASSWORD": PASSWORD},
    )


def test_install_into_a_space_reports_success(import_api: ImportApi) -> None:
    result = _install("--kibana", import_api.url, "--space", "bec-7", "--case", "bec-7")
    assert result.exit_code == 0, result.output
    assert result.output == "Kibana: imported 10 of 10 objects, 0 failed\n"
    [request] = import_api.requests
    assert request["path"] == "/s/bec-7/api/saved_objects/_import"
    assert request["query"] == {"overwrite": ["true"]}
    assert request["headers"]["kbn-xsrf"] == "true"
    titles = [o["attributes"]["title"] for o in request["objects"][:2]]
    assert titles == ["inbec-findings-bec-7", "inbec-messages-bec-7"]
    assert PASSWORD not in result.output


def test_failed_objects_are_listed_and_exit_one(import_api: ImportApi) -> None:
    import_api.fail = {
        "inbec-auth-failures": {
            "type": "missing_references",
            "references": [{"type": "index-pattern", "id": "inbec-findings"}],
        },
        "inbec-overview": {"type": "unknown", "message": "bad panels", "statusCode": 400},
    }
    result = _install("--kibana", import_api.url)
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "failed: lens:inbec-auth-failures 'Authentication failures': missing references "
        "index-pattern:inbec-findings",
        "failed: dashboard:inbec-overview 'inbec: case overview': unknown (400): bad panels",
        "Kibana: imported 8 of 10 objects, 2 failed",
    ]
    [request] = import_api.requests
    assert request["path"] == "/api/saved_objects/_import"
    assert request["query"] == {"overwrite": ["true"]}
    assert PASSWORD not in result.output


def test_opensearch_dashboards_variant_sends_osd_xsrf(import_api: ImportApi) -> None:
    import_api.xsrf_header = "osd-xsrf"
    result = _install("--opensearch-dashboards", import_api.url)
    assert result.exit_code == 0, result.output
    assert result.output == "OpenSearch Dashboards: imported 11 of 11 objects, 0 failed\n"
    [request] = import_api.requests
    assert request["headers"]["osd-xsrf"] == "true"
    assert "kbn-xsrf" not in request["headers"]
    assert {o["type"] for o in request["objects"]} == {
        "index-pattern",
        "search",
        "visualization",
        "dashboard",
    }


def test_a_refused_request_is_one_line_and_exit_one(import_api: ImportApi) -> None:
    import_api.xsrf_header = "osd-xsrf"  # a Kibana client does not send it: 400
    result = _install("--kibana", import_api.url)
    assert result.exit_code == 1
    assert result.output == (
        f"error: {import_api.url} answered 400: Request must contain a osd-xsrf header.\n"
    )


def test_wrong_password_is_one_line_without_the_password(import_api: ImportApi) -> None:
    result = runner.invoke(
        app,
        ["dashboards", "install", "--kibana", import_api.url, "--user", USER],
        env={"INBEC_DASHBOARDS_PASSWORD": "wrong-" + PASSWORD},
    )
    assert result.exit_code == 1
    assert result.output == (
        f"error: {import_api.url} refused the credentials (401): check --user/--password, "
        "--api-key or --bearer-token (or their environment variables)\n"
    )
    assert PASSWORD not in result.output


def test_usage_errors_exit_two(import_api: ImportApi) -> None:
    result = _install()
    assert result.exit_code == 2
    assert (
        result.output == "error: give --kibana URL or --opensearch-dashboards URL (one of them)\n"
    )
    result = _install("--kibana", import_api.url, "--space", "Bad Space")
    assert result.exit_code == 2
    assert result.output == (
        "error: --space 'Bad Space': a space id is lower-case letters, digits, '_' or '-'\n"
    )
    result = _install("--kibana", "localhost:5601")
    assert result.exit_code == 2
    assert import_api.requests == []


def test_unreachable_server_is_one_line() -> None:
    result = _install("--kibana", "http://127.0.0.1:9")
    assert result.exit_code == 1
    assert result.output == (
        "error: cannot connect to http://127.0.0.1:9: is the server running, and are the "
        "host and port right?\n"
    )
