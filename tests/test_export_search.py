"""Export to real Elasticsearch and OpenSearch nodes started by the test suite.

Counts, exact field values read back, ECS queries, templates, idempotent re-runs,
rejected documents, a server that goes away mid-export, and the one-line errors for
wrong credentials, a wrong URL and TLS problems.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sample_helpers import analyzed_sample_case
from typer.testing import CliRunner

from inbec_export.case import CaseContext
from inbec_export.cli import app
from inbec_export.ecs.mappings import index_templates
from inbec_export.pipeline import analyze
from inbec_export.sample import generator as story
from inbec_export.sample.generator import generate_sample_case
from inbec_export.sinks.search import (
    CHUNK_DOCUMENTS,
    FLAVOURS,
    Connection,
    ExportError,
    export_case,
    install_templates,
)

pytestmark = pytest.mark.server
runner = CliRunner()


@pytest.fixture(scope="module")
def sample_case(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return analyzed_sample_case(tmp_path_factory.mktemp("sample-export"))


@pytest.fixture(scope="module")
def corpus_case(corpus_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("corpus-export")
    analyze(
        [corpus_dir / "pst", corpus_dir / "msg", corpus_dir / "eml"],
        CaseContext(case_id="corpus", legit_domains=("acme-corp.com",)),
        out,
    )
    return out


def _copy_case(case_dir: Path, target: Path) -> Path:
    shutil.copytree(case_dir, target)
    return target


def _documents(case_dir: Path, kind: str) -> dict[str, dict[str, Any]]:
    lines = (case_dir / f"{kind}.ndjson").read_text("utf-8").splitlines()
    return {
        json.loads(action)["create"]["_id"]: json.loads(document)
        for action, document in zip(lines[0::2], lines[1::2], strict=True)
    }


SERVERS = ["opensearch", "elasticsearch"]

# ``server``: (flavour, URL) of each real search server (tests/servers/fixtures.py).


def _client(flavour: str, url: str) -> Any:
    return FLAVOURS[flavour].client(Connection(url))


def _count(client: Any, index: str, query: dict[str, Any] | None = None) -> int:
    body = {"query": query} if query else None
    return int(client.count(index=index, body=body)["count"])


def _cli_export(flavour: str, url: str, case_dir: Path, *extra: str) -> Any:
    return runner.invoke(
        app, ["export", flavour, "--from-case", str(case_dir), "--url", url, "-q", *extra]
    )


def test_sample_case_round_trip(server: tuple[str, str], sample_case: Path) -> None:
    flavour, url = server
    prefix = f"t1{flavour[:2]}"
    result = _cli_export(flavour, url, sample_case, "--prefix", prefix)
    assert result.exit_code == 0, result.output
    messages = _documents(sample_case, "messages")
    findings = _documents(sample_case, "findings")
    assert (
        f"sent {len(messages) + len(findings)}, created {len(messages) + len(findings)}, "
        "updated 0, unchanged 0, rejected 0" in result.output
    )
    client = _client(flavour, url)
    message_index, finding_index = f"{prefix}-messages-sample", f"{prefix}-findings-sample"
    assert _count(client, message_index) == 14 == len(messages)
    assert _count(client, finding_index) == len(findings)
    # Read back: the stored source is the document as written, field for field.
    for doc_id in sorted(messages)[:5]:
        stored = client.get(index=message_index, id=doc_id)["_source"]
        assert stored == messages[doc_id]
    # ECS queries an analyst pivots on.
    assert (
        _count(client, message_index, {"term": {"email.from.address": story.LOOKALIKE_ADDRESS}})
        == 1
    )
    assert _count(client, finding_index, {"term": {"rule.id": "thread-intrusion"}}) == 1
    assert _count(
        client, finding_index, {"term": {"threat.indicator.url.domain": story.LOOKALIKE_DOMAIN}}
    ) == sum(
        1
        for d in findings.values()
        if d.get("threat", {}).get("indicator", {}).get("url", {}).get("domain")
        == story.LOOKALIKE_DOMAIN
    )
    hits = client.search(
        index=finding_index, body={"query": {"term": {"rule.id": "lookalike-domain"}}}
    )["hits"]["hits"]
    assert [h["_source"]["inbec"]["finding"]["evidence"]["legit_domain"] for h in hits] == [
        story.LOOKALIKE_OF
    ]
    # The mappings in the server are the repository's.
    for kind in ("messages", "findings"):
        index = f"{prefix}-{kind}-sample"
        live = client.indices.get_mapping(index=index)[index]["mappings"]
        assert live == index_templates(prefix)[kind]["template"]["mappings"]


def test_rerun_adds_nothing(server: tuple[str, str], sample_case: Path) -> None:
    flavour, url = server
    prefix = f"t2{flavour[:2]}"
    connection = Connection(url)
    first = export_case(FLAVOURS[flavour], connection, sample_case, "sample", prefix)
    second = export_case(FLAVOURS[flavour], connection, sample_case, "sample", prefix)
    assert first.created == first.total and first.unchanged == first.updated == 0
    assert second.created == second.updated == 0
    assert second.unchanged == second.total == first.total
    assert (second.stale, second.deleted) == (0, 0)
    assert second.templates == {f"{prefix}-messages": "kept", f"{prefix}-findings": "kept"}
    client = _client(flavour, url)
    assert _count(client, f"{prefix}-messages-sample") == 14


def test_corpus_case(server: tuple[str, str], corpus_case: Path) -> None:
    flavour, url = server
    prefix = f"t3{flavour[:2]}"
    result = export_case(FLAVOURS[flavour], Connection(url), corpus_case, "corpus", prefix)
    messages = _documents(corpus_case, "messages")
    assert result.rejected == 0 and result.unsent == 0
    client = _client(flavour, url)
    assert _count(client, f"{prefix}-messages-corpus") == len(messages) == 595
    assert _count(client, f"{prefix}-findings-corpus") == len(_documents(corpus_case, "findings"))
    hits = client.search(
        index=f"{prefix}-messages-corpus",
        body={"query": {"term": {"email.subject": "Urgent: Need W2s"}}},
    )["hits"]["hits"]
    # Both Sublime samples carry this subject, from the same freemail sender.
    assert sorted(Path(h["_source"]["inbec"]["evidence"]["path"]).name for h in hits) == [
        "sublime_bec_ceo_impersonation.eml",
        "sublime_impersonation.eml",
    ]
    assert {h["_source"]["email"]["from"]["address"][0] for h in hits} == {
        "joshkamdjou90@gmail.com"
    }


def test_rejected_document_is_written_with_the_reason(
    server: tuple[str, str], sample_case: Path, tmp_path: Path
) -> None:
    flavour, url = server
    case_dir = _copy_case(sample_case, tmp_path / "case")
    lines = (case_dir / "messages.ndjson").read_text("utf-8").splitlines()
    bad_id = json.loads(lines[0])["create"]["_id"]
    document = json.loads(lines[1])
    document["not_in_the_mapping"] = "x"  # the mapping is strict
    lines[1] = json.dumps(document)
    (case_dir / "messages.ndjson").write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = _cli_export(flavour, url, case_dir, "--prefix", f"t4{flavour[:2]}")
    assert result.exit_code == 1
    assert "rejected 1" in result.output
    [entry] = [json.loads(line) for line in (case_dir / "rejected.ndjson").read_text().splitlines()]
    assert entry["id"] == bad_id
    assert entry["status"] == 400
    assert entry["error"]["type"] == "strict_dynamic_mapping_exception"
    assert "not_in_the_mapping" in entry["reason"]
    assert entry["document"]["not_in_the_mapping"] == "x"


class CuttableProxy:
    """A TCP proxy on 127.0.0.1 in front of a real server that goes away (refuses and
    drops every connection) when the client starts its ``cut_at_bulk``-th bulk request."""

    def __init__(self, target_port: int, cut_at_bulk: int) -> None:
        self.target_port = target_port
        self.cut_at_bulk = cut_at_bulk
        self.bulk_requests = 0
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.down = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.down.is_set():
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, source: socket.socket, target: socket.socket, upload: bool) -> None:
        try:
            while chunk := source.recv(65536):
                if upload:
                    self.bulk_requests += chunk.count(b"/_bulk")
                    if self.bulk_requests >= self.cut_at_bulk:
                        self.down.set()
                if self.down.is_set():
                    break
                target.sendall(chunk)
        except OSError:
            pass
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self.listener.close()


def test_server_gone_mid_export_then_rerun_completes(
    server: tuple[str, str], corpus_case: Path
) -> None:
    flavour, url = server
    prefix = f"t5{flavour[:2]}"
    port = int(url.rsplit(":", 1)[1])
    proxy = CuttableProxy(port, cut_at_bulk=2)
    try:
        first = _cli_export(
            flavour, f"http://127.0.0.1:{proxy.port}", corpus_case, "--prefix", prefix
        )
    finally:
        proxy.close()
    output = " ".join(first.output.split())
    total = len(_documents(corpus_case, "messages")) + len(_documents(corpus_case, "findings"))
    sent = CHUNK_DOCUMENTS  # the first bulk request went through, the second never arrived
    assert first.exit_code == 1, output
    assert f"{total - sent} documents not sent: run the same command again to complete" in output
    assert f"sent {sent}, created {sent}, updated 0, unchanged 0, rejected 0, not sent " in output
    second = export_case(FLAVOURS[flavour], Connection(url), corpus_case, "corpus", prefix)
    assert (second.total, second.unchanged, second.created) == (total, sent, total - sent)
    assert second.updated == 0
    assert second.unsent == 0 and second.rejected == 0
    client = _client(flavour, url)
    assert _count(client, f"{prefix}-messages-corpus") == len(_documents(corpus_case, "messages"))
    assert _count(client, f"{prefix}-findings-corpus") == len(_documents(corpus_case, "findings"))


class ThrottlingProxy:
    """An HTTP/1.1 proxy on 127.0.0.1 that answers the first ``throttle`` bulk requests
    with 429 Too Many Requests (as a busy node does) and forwards everything else."""

    def __init__(self, target_port: int, throttle: int, product: str) -> None:
        self.target_port = target_port
        self.remaining = throttle
        self.throttled = 0
        self.authorization: list[str] = []
        self.product = product
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.target_port))
        back = threading.Thread(target=self._copy, args=(upstream, client), daemon=True)
        back.start()
        buffer = b""
        try:
            while True:
                while b"\r\n\r\n" not in buffer:
                    chunk = client.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                head, _, rest = buffer.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value.strip())
                while len(rest) < length:
                    chunk = client.recv(65536)
                    if not chunk:
                        return
                    rest += chunk
                body, buffer = rest[:length], rest[length:]
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"authorization":
                        self.authorization.append(value.strip().decode())
                if b"/_bulk" in head.split(b"\r\n", 1)[0] and self._take():
                    payload = json.dumps(
                        {
                            "error": {
                                "type": "es_rejected_execution_exception",
                                "reason": "rejected execution (queue full)",
                            },
                            "status": 429,
                        }
                    ).encode()
                    client.sendall(
                        b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\n"
                        + f"X-Elastic-Product: {self.product}\r\n".encode()
                        + f"Content-Length: {len(payload)}\r\n\r\n".encode()
                        + payload
                    )
                    continue
                upstream.sendall(head + b"\r\n\r\n" + body)
        except OSError:
            pass
        finally:
            for sock in (client, upstream):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def _take(self) -> bool:
        with self.lock:
            if self.remaining <= 0:
                return False
            self.remaining -= 1
            self.throttled += 1
            return True

    @staticmethod
    def _copy(source: socket.socket, target: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                target.sendall(chunk)
        except OSError:
            pass

    def close(self) -> None:
        self.listener.close()


def test_throttled_bulk_is_retried_with_backoff(
    server: tuple[str, str], sample_case: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import inbec_export.sinks.search as search

    flavour, url = server
    monkeypatch.setattr(search, "INITIAL_BACKOFF_SECONDS", 0.2)
    proxy = ThrottlingProxy(int(url.rsplit(":", 1)[1]), throttle=2, product="Elasticsearch")
    try:
        started = time.monotonic()
        result = export_case(
            FLAVOURS[flavour],
            Connection(f"http://127.0.0.1:{proxy.port}"),
            sample_case,
            "sample",
            f"t8{flavour[:2]}",
        )
        elapsed = time.monotonic() - started
    finally:
        proxy.close()
    assert proxy.throttled == 2
    assert (result.created, result.rejected, result.unsent) == (result.total, 0, 0)
    assert elapsed >= 0.2 + 0.4  # two waits, the second twice the first


def test_foreign_template_is_never_overwritten(opensearch_url: str) -> None:
    client = _client("opensearch", opensearch_url)
    client.indices.put_index_template(
        name="t6-messages", body={"index_patterns": ["t6-messages-*"], "priority": 1}
    )
    with pytest.raises(ExportError, match="exists and is not inbec-export's"):
        install_templates(client, "t6")
    assert "t6-messages" in json.dumps(client.indices.get_index_template(name="t6-messages"))


def test_wrong_credentials_say_what_to_fix(elasticsearch_secure: Any, sample_case: Path) -> None:
    secret = "definitely-wrong-password-7"
    result = runner.invoke(
        app,
        [
            "export",
            "elasticsearch",
            "--from-case",
            str(sample_case),
            "--url",
            elasticsearch_secure.url,
            "--user",
            "elastic",
            "-q",
        ],
        env={"INBEC_ES_PASSWORD": secret},
    )
    assert result.exit_code == 1
    assert "refused the credentials (401): check --user/--password" in result.output
    assert secret not in result.output
    ok = runner.invoke(
        app,
        [
            "export",
            "elasticsearch",
            "--from-case",
            str(sample_case),
            "--url",
            elasticsearch_secure.url,
            "--user",
            "elastic",
            "-q",
            "--prefix",
            "t7",
        ],
        env={"INBEC_ES_PASSWORD": elasticsearch_secure.credentials.password},
    )
    assert ok.exit_code == 0, ok.output
    assert elasticsearch_secure.credentials.password not in ok.output


def test_wrong_url_says_what_to_fix(sample_case: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for flavour in SERVERS:
        result = _cli_export(flavour, f"http://127.0.0.1:{port}", sample_case)
        assert result.exit_code == 1
        assert f"cannot connect to http://127.0.0.1:{port}: is the server running" in (
            result.output.replace("\n", " ")
        )


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """An HTTPS listener on 127.0.0.1 with a self-signed certificate nobody trusts."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            str(folder / "key.pem"),
            "-out",
            str(folder / "cert.pem"),
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                raw, _ = listener.accept()
            except OSError:
                return
            try:
                with context.wrap_socket(raw, server_side=True) as conn:
                    conn.recv(1024)
            except (OSError, ssl.SSLError):
                pass

    threading.Thread(target=serve, daemon=True).start()
    yield listener.getsockname()[1]
    stop.set()
    listener.close()


def test_tls_error_says_what_to_fix(tls_server: int, sample_case: Path) -> None:
    for flavour in SERVERS:
        result = _cli_export(flavour, f"https://127.0.0.1:{tls_server}", sample_case)
        assert result.exit_code == 1
        assert "could not be verified: pass the server's CA with --ca-cert FILE" in (
            result.output.replace("\n", " ")
        )


def test_older_template_of_ours_is_replaced(opensearch_url: str) -> None:
    client = _client("opensearch", opensearch_url)
    old = index_templates("t9")["messages"]
    client.indices.put_index_template(name="t9-messages", body={**old, "version": 0})
    assert install_templates(client, "t9") == {
        "t9-messages": "replaced",
        "t9-findings": "installed",
    }
    stored = client.indices.get_index_template(name="t9-messages")["index_templates"][0]
    assert stored["index_template"]["version"] == index_templates("t9")["messages"]["version"]


def test_export_straight_from_evidence(opensearch_url: str, tmp_path: Path) -> None:
    sample = generate_sample_case(tmp_path / "sample")
    out = tmp_path / "case"
    result = runner.invoke(
        app,
        [
            "export",
            "opensearch",
            str(sample.evidence_dir),
            "--legit-file",
            str(sample.legit_file),
            "--case",
            "fresh",
            "--out",
            str(out),
            "--url",
            opensearch_url,
            "--prefix",
            "t10",
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    client = _client("opensearch", opensearch_url)
    assert _count(client, "t10-messages-fresh") == 14
    assert _count(client, "t10-findings-fresh", {"term": {"rule.id": "lookalike-domain"}}) == 1
    assert json.loads((out / "summary.json").read_text())["case"]["id"] == "fresh"


def test_secrets_stay_out_of_outputs(sample_case: Path, tmp_path: Path) -> None:
    case_dir = _copy_case(sample_case, tmp_path / "case")
    secret = "s3cr3t-api-key-value"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = runner.invoke(
        app,
        [
            "export",
            "elasticsearch",
            "--from-case",
            str(case_dir),
            "--url",
            f"http://127.0.0.1:{port}",
            "-v",
        ],
        env={"INBEC_ES_API_KEY": secret},
    )
    assert result.exit_code == 1
    assert secret not in result.output
    for path in case_dir.rglob("*"):
        if path.is_file():
            assert secret not in path.read_text("utf-8", errors="replace"), path
    assert secret not in repr(Connection("http://x", api_key=secret))


@pytest.mark.parametrize(
    ("option", "env", "header"),
    [
        ("api_key", "API_KEY", "ApiKey k3y-value"),
        ("bearer_token", "BEARER_TOKEN", "Bearer t0ken-value"),
    ],
)
def test_api_key_and_bearer_token_are_sent_as_such(
    server: tuple[str, str], sample_case: Path, option: str, env: str, header: str
) -> None:
    # The nodes here have no security plugin that could check an API key (the
    # Elasticsearch test distribution lacks the analysis module its security index
    # needs), so the proxy records what the client sends while the node stores the data.
    flavour, url = server
    proxy = ThrottlingProxy(int(url.rsplit(":", 1)[1]), throttle=0, product="Elasticsearch")
    secret = header.split(" ", 1)[1]
    prefix = f"t12{flavour[:2]}{env[:1].lower()}"
    variable = ("INBEC_ES_" if flavour == "elasticsearch" else "INBEC_OPENSEARCH_") + env
    try:
        result = runner.invoke(
            app,
            [
                "export",
                flavour,
                "--from-case",
                str(sample_case),
                "--url",
                f"http://127.0.0.1:{proxy.port}",
                "--prefix",
                prefix,
                "-q",
            ],
            env={variable: secret},
        )
    finally:
        proxy.close()
    assert result.exit_code == 0, result.output
    assert secret not in result.output
    assert proxy.authorization and set(proxy.authorization) == {header}
    assert _count(_client(flavour, url), f"{prefix}-messages-sample") == 14
