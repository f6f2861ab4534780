"""Export a case folder into Elasticsearch or OpenSearch: templates, idempotent bulk.

Documents keep the deterministic ids the case folder gives them and go in with the bulk
``create`` operation: a document already in the index answers 409 and is counted as
already present, so re-running an export (after an interruption, or on purpose) adds
nothing twice. Documents the server rejects are written with its reason to
``rejected.ndjson`` in the case folder.

The two servers are driven through their own clients (``elasticsearch`` 8.x, which talks
to Elasticsearch 8 and 9 servers, and ``opensearch-py``); what differs between them is
kept in :class:`Flavour`.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inbec_export.ecs.mappings import DEFAULT_PREFIX, KINDS, TEMPLATE_VERSION, index_templates
from inbec_export.errors import InbecError, UsageError, check_server_url

logger = logging.getLogger(__name__)

#: Documents per bulk request, and bytes per bulk request at most (servers accept 100 MB;
#: smaller requests keep memory flat and let progress show).
CHUNK_DOCUMENTS = 500
CHUNK_BYTES = 8 * 1024 * 1024

#: What a ``_bulk`` answer keeps of each item (``filter_path``): what the export counts
#: and what ``rejected.ndjson`` records.
BULK_ANSWER_FIELDS = ["errors", "items.*._index", "items.*._id", "items.*.status", "items.*.error"]

#: Retries of a bulk request the server throttles (429), with exponential backoff from
#: INITIAL_BACKOFF_SECONDS up to MAX_BACKOFF_SECONDS.
BULK_RETRIES = 6
INITIAL_BACKOFF_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 30.0

#: Retries of one HTTP request on connection errors and 502/503/504 (client level).
REQUEST_RETRIES = 3
REQUEST_TIMEOUT_SECONDS = 60.0

REJECTED_FILE = "rejected.ndjson"

#: Index name prefixes that Elastic's managed templates (data streams such as
#: ``logs-*-*``) would take over.
_MANAGED_PREFIXES = ("logs", "metrics", "traces", "synthetics", "profiling")
_PREFIX = re.compile(r"^[a-z][a-z0-9_\-]{0,40}$")


class ExportError(InbecError):
    """The export cannot go on; the message says what to fix."""


@dataclass(frozen=True)
class Connection:
    """Where the server is and how to log in. Secrets never appear in its repr."""

    url: str
    api_key: str | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    bearer_token: str | None = field(default=None, repr=False)
    ca_cert: Path | None = None
    verify_tls: bool = True

    def __post_init__(self) -> None:
        check_server_url(self.url)
        if self.user is not None and self.password is None:
            raise UsageError("--user needs a password (--password or the environment)")
        if self.ca_cert is not None and not self.ca_cert.is_file():
            raise UsageError(f"--ca-cert {self.ca_cert}: no such file")
        if self.ca_cert is not None and not self.url.startswith("https://"):
            raise UsageError("--ca-cert is for an https:// URL; this one is http://")

    def secrets(self) -> list[str]:
        """The secret values, so that error texts can be checked not to carry them."""
        return [s for s in (self.api_key, self.password, self.bearer_token) if s]

    def __repr__(self) -> str:
        auth = (
            "api key"
            if self.api_key
            else "basic"
            if self.user
            else ("bearer" if self.bearer_token else "none")
        )
        return f"Connection(url={self.url!r}, auth={auth}, verify_tls={self.verify_tls})"


def validate_prefix(prefix: str) -> str:
    """Check an index prefix: lower case, and not one a managed template would take."""
    if not _PREFIX.match(prefix):
        raise UsageError(
            f"--prefix {prefix!r}: use lower-case letters, digits, '-' or '_', starting "
            "with a letter"
        )
    head = prefix.split("-", 1)[0]
    if head in _MANAGED_PREFIXES:
        raise UsageError(
            f"--prefix {prefix!r}: names under {head}-*-* belong to Elastic's managed "
            "templates; choose another prefix"
        )
    return prefix


def index_name(prefix: str, kind: str, case_id: str) -> str:
    """``<prefix>-<kind>-<case>``: matched by the kind's template pattern."""
    return f"{prefix}-{kind}-{case_id}"


@dataclass
class ExportResult:
    """What one export did, per document."""

    total: int = 0
    created: int = 0
    present: int = 0
    rejected: int = 0
    templates: dict[str, str] = field(default_factory=dict)
    stopped: str | None = None

    @property
    def sent(self) -> int:
        """Documents the server answered for."""
        return self.created + self.present + self.rejected

    @property
    def unsent(self) -> int:
        """Documents not (yet) in the index because the export stopped."""
        return self.total - self.sent

    def line(self) -> str:
        """The final line of the export."""
        text = (
            f"sent {self.sent}, created {self.created}, already present {self.present}, "
            f"rejected {self.rejected}"
        )
        return text + (f", not sent {self.unsent}" if self.unsent else "")


class Flavour:
    """What differs between Elasticsearch and OpenSearch: the client and its errors."""

    name = ""

    def client(self, connection: Connection) -> Any:
        """A client for ``connection``."""
        raise NotImplementedError

    def streaming_bulk(self) -> Callable[..., Iterator[tuple[bool, dict[str, Any]]]]:
        """The client library's streaming bulk helper."""
        raise NotImplementedError

    def describe_error(self, exc: Exception, connection: Connection) -> str | None:
        """A one-line message saying what to fix, or None for an unexpected error."""
        raise NotImplementedError


class ElasticsearchFlavour(Flavour):
    """Elasticsearch 8.x and 9.x, through the 8.x client (compatible with both)."""

    name = "Elasticsearch"

    def client(self, connection: Connection) -> Any:
        from elasticsearch import Elasticsearch

        options: dict[str, Any] = {
            "request_timeout": REQUEST_TIMEOUT_SECONDS,
            "max_retries": REQUEST_RETRIES,
            "retry_on_timeout": True,
            "retry_on_status": (502, 503, 504),
            "verify_certs": connection.verify_tls,
        }
        if not connection.verify_tls:
            options["ssl_show_warn"] = False
        if connection.ca_cert is not None:
            options["ca_certs"] = str(connection.ca_cert)
        if connection.api_key:
            options["api_key"] = connection.api_key
        elif connection.user:
            options["basic_auth"] = (connection.user, connection.password or "")
        elif connection.bearer_token:
            options["bearer_auth"] = connection.bearer_token
        return Elasticsearch(connection.url, **options)

    def streaming_bulk(self) -> Callable[..., Iterator[tuple[bool, dict[str, Any]]]]:
        from elasticsearch.helpers import streaming_bulk

        return streaming_bulk  # type: ignore[return-value]

    def describe_error(self, exc: Exception, connection: Connection) -> str | None:
        import elastic_transport
        import elasticsearch

        url = connection.url
        if isinstance(exc, elasticsearch.UnsupportedProductError):
            return f"{url} is not Elasticsearch (use `inbec export opensearch` for OpenSearch)"
        if isinstance(exc, elastic_transport.TlsError):
            return _tls_message(url)
        if isinstance(exc, elastic_transport.ConnectionError | elastic_transport.ConnectionTimeout):
            return _connect_message(url, exc)
        if isinstance(exc, elasticsearch.AuthenticationException):
            return _auth_message(url)
        if isinstance(exc, elasticsearch.AuthorizationException):
            return _permission_message(url)
        if isinstance(exc, elasticsearch.ApiError):
            return f"{url} answered {exc.status_code}: {_api_reason(exc.body)}"
        return None


class OpenSearchFlavour(Flavour):
    """OpenSearch 2.x and 3.x, through opensearch-py."""

    name = "OpenSearch"

    def client(self, connection: Connection) -> Any:
        from opensearchpy import OpenSearch

        headers: dict[str, str] = {}
        options: dict[str, Any] = {
            "timeout": REQUEST_TIMEOUT_SECONDS,
            "max_retries": REQUEST_RETRIES,
            "retry_on_timeout": True,
            "retry_on_status": (502, 503, 504),
            "verify_certs": connection.verify_tls,
            "ssl_show_warn": connection.verify_tls,
        }
        if connection.ca_cert is not None:
            options["ca_certs"] = str(connection.ca_cert)
        if connection.api_key:
            headers["Authorization"] = f"ApiKey {connection.api_key}"
        elif connection.user:
            options["http_auth"] = (connection.user, connection.password or "")
        elif connection.bearer_token:
            headers["Authorization"] = f"Bearer {connection.bearer_token}"
        if headers:
            options["headers"] = headers
        return OpenSearch(hosts=[connection.url], **options)

    def streaming_bulk(self) -> Callable[..., Iterator[tuple[bool, dict[str, Any]]]]:
        from opensearchpy.helpers import streaming_bulk

        return streaming_bulk  # type: ignore[no-any-return]

    def describe_error(self, exc: Exception, connection: Connection) -> str | None:
        from opensearchpy import exceptions as errors

        url = connection.url
        if isinstance(exc, errors.SSLError):
            return _tls_message(url)
        if isinstance(exc, errors.ConnectionTimeout | errors.ConnectionError):
            return _connect_message(url, exc)
        if isinstance(exc, errors.AuthenticationException):
            return _auth_message(url)
        if isinstance(exc, errors.AuthorizationException):
            return _permission_message(url)
        if isinstance(exc, errors.TransportError) and isinstance(exc.status_code, int):
            return f"{url} answered {exc.status_code}: {_api_reason(exc.info)}"
        return None


FLAVOURS: dict[str, Flavour] = {
    "elasticsearch": ElasticsearchFlavour(),
    "opensearch": OpenSearchFlavour(),
}


def _tls_message(url: str) -> str:
    return (
        f"TLS certificate of {url} could not be verified: pass the server's CA with "
        "--ca-cert FILE (or --insecure to skip verification, not recommended)"
    )


def _connect_message(url: str, exc: Exception) -> str:
    cause = str(exc).lower()
    if "ssl" in cause or "certificate" in cause or "tls" in cause:
        return _tls_message(url)
    return f"cannot connect to {url}: is the server running, and are the host and port right?"


def _auth_message(url: str) -> str:
    return (
        f"{url} refused the credentials (401): check --user/--password, --api-key or "
        "--bearer-token (or their environment variables)"
    )


def _permission_message(url: str) -> str:
    return (
        f"{url} denied the request (403): the user needs rights to manage index templates "
        "and to write the case's indices"
    )


def _api_reason(body: Any) -> str:
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            return str(error.get("reason") or error.get("type") or error)[:300]
        if error:
            return str(error)[:300]
    return str(body)[:300]


def install_templates(client: Any, prefix: str) -> dict[str, str]:
    """Install (or upgrade) the index template of each kind; returns what was done.

    A template of ours at the same or a newer version is left as it is; an older one is
    replaced. A template of the same name that is not ours stops the export: it is the
    user's, and never overwritten.
    """
    done: dict[str, str] = {}
    for kind, template in index_templates(prefix).items():
        name = f"{prefix}-{kind}"
        existing = _existing_template(client, name)
        if existing is not None:
            meta = existing.get("_meta") or {}
            if meta.get("managed_by") != "inbec-export":
                raise ExportError(
                    f"index template {name!r} exists and is not inbec-export's: choose "
                    "another --prefix, or remove that template"
                )
            if int(existing.get("version") or 0) >= TEMPLATE_VERSION:
                done[name] = "kept"
                continue
        client.indices.put_index_template(name=name, body=template)
        done[name] = "replaced" if existing is not None else "installed"
    return done


def _existing_template(client: Any, name: str) -> dict[str, Any] | None:
    try:
        response = client.indices.get_index_template(name=name)
    except Exception as exc:
        if getattr(exc, "status_code", None) == 404 or getattr(exc, "status", None) == 404:
            return None
        meta = getattr(exc, "meta", None)
        if getattr(meta, "status", None) == 404:
            return None
        raise
    templates = response.get("index_templates") or []
    for entry in templates:
        if entry.get("name") == name:
            template: dict[str, Any] = entry.get("index_template") or {}
            return template
    return None


def count_documents(case_dir: Path) -> int:
    """Documents in the case folder's message and finding files."""
    total = 0
    for kind in KINDS:
        with (case_dir / f"{kind}.ndjson").open(encoding="utf-8") as handle:
            total += sum(1 for _ in handle) // 2
    return total


def case_actions(case_dir: Path, prefix: str, case_id: str) -> Iterator[dict[str, Any]]:
    """Bulk ``create`` actions for every document of the case folder, streamed.

    Each document goes as the JSON text the case folder holds (both clients send a
    string source as it is): parsing it only to serialise it again would cost about as
    much as the whole request.
    """
    for kind in KINDS:
        index = index_name(prefix, kind, case_id)
        with (case_dir / f"{kind}.ndjson").open(encoding="utf-8") as handle:
            for action_line in handle:
                document_line = handle.readline()
                action = json.loads(action_line)
                doc_id = action["create"]["_id"]
                yield {
                    "_op_type": "create",
                    "_index": index,
                    "_id": doc_id,
                    "_source": document_line.rstrip("\n"),
                }


def check_case_folder(case_dir: Path) -> dict[str, Any]:
    """The summary of a complete case folder, or a usage error saying what is wrong."""
    summary_path = case_dir / "summary.json"
    if not summary_path.is_file():
        raise UsageError(f"{case_dir} is not a case folder (no summary.json): run analyze")
    summary: dict[str, Any] = json.loads(summary_path.read_text("utf-8"))
    if summary.get("status") != "complete":
        raise UsageError(
            f"{case_dir} holds an incomplete analysis: run the same analyze command again"
        )
    return summary


def export_case(
    flavour: Flavour,
    connection: Connection,
    case_dir: Path,
    case_id: str,
    prefix: str = DEFAULT_PREFIX,
    progress: Callable[[int, int], None] | None = None,
) -> ExportResult:
    """Install the templates and bulk-index every document of ``case_dir``.

    Args:
        flavour: Elasticsearch or OpenSearch.
        connection: URL and credentials.
        case_dir: a complete case folder.
        case_id: the case id, part of the index names.
        prefix: the index and template name prefix.
        progress: called with ``(documents answered, total)`` as the export goes.

    Returns:
        The counts; ``stopped`` says why the export ended early, if it did.

    Raises:
        ExportError: the server cannot be used (unreachable, credentials, TLS, a foreign
            template); the message says what to fix and carries no secret.
    """
    check_case_folder(case_dir)
    prefix = validate_prefix(prefix)
    result = ExportResult(total=count_documents(case_dir))
    client = flavour.client(connection)
    try:
        # The first request also checks the server is the product the client expects.
        result.templates = install_templates(client, prefix)
    except ExportError:
        raise
    except Exception as exc:
        raise ExportError(_explain(flavour, exc, connection)) from None
    rejected: list[dict[str, Any]] = []
    try:
        _bulk(flavour, client, case_dir, case_id, prefix, result, rejected, progress)
    except Exception as exc:
        result.stopped = (
            f"{_explain(flavour, exc, connection)}; {result.unsent} documents not sent: "
            "run the same command again to complete the export"
        )
    _write_rejected(case_dir, rejected)
    try:
        for kind in KINDS:
            client.indices.refresh(index=index_name(prefix, kind, case_id))
    except Exception as exc:
        logger.debug("refresh failed: %s", _scrub(str(exc), connection))
    return result


def _explain(flavour: Flavour, exc: Exception, connection: Connection) -> str:
    message = flavour.describe_error(exc, connection)
    if message is None:
        message = f"{flavour.name} export failed: {type(exc).__name__}: {exc}"
    return _scrub(message, connection)


def _scrub(text: str, connection: Connection) -> str:
    for secret in connection.secrets():
        text = text.replace(secret, "***")
    return text


def _bulk(
    flavour: Flavour,
    client: Any,
    case_dir: Path,
    case_id: str,
    prefix: str,
    result: ExportResult,
    rejected: list[dict[str, Any]],
    progress: Callable[[int, int], None] | None,
) -> None:
    streaming_bulk = flavour.streaming_bulk()
    results = streaming_bulk(
        client,
        case_actions(case_dir, prefix, case_id),
        chunk_size=CHUNK_DOCUMENTS,
        max_chunk_bytes=CHUNK_BYTES,
        raise_on_error=False,
        raise_on_exception=True,
        max_retries=BULK_RETRIES,
        initial_backoff=INITIAL_BACKOFF_SECONDS,
        max_backoff=MAX_BACKOFF_SECONDS,
        yield_ok=True,
        # The server answers only what is read here: about half the bytes of a full
        # answer to parse, on both sides.
        filter_path=BULK_ANSWER_FIELDS,
    )
    last = time.monotonic()
    for ok, item in results:
        outcome: dict[str, Any] = item.get("create") or next(iter(item.values()), {})
        status = int(outcome.get("status") or 0)
        if ok and status in (200, 201):
            result.created += 1
        elif status == 409:
            result.present += 1
        else:
            result.rejected += 1
            rejected.append(
                {
                    "index": outcome.get("_index"),
                    "id": outcome.get("_id"),
                    "status": status,
                    "reason": _api_reason({"error": outcome.get("error")}),
                    "error": outcome.get("error"),
                }
            )
        if progress is not None and (time.monotonic() - last > 0.2 or result.unsent == 0):
            progress(result.sent, result.total)
            last = time.monotonic()
    if progress is not None:
        progress(result.sent, result.total)


def _write_rejected(case_dir: Path, rejected: list[dict[str, Any]]) -> None:
    """Write ``rejected.ndjson`` (each entry with its document), or remove a stale one."""
    path = case_dir / REJECTED_FILE
    if not rejected:
        path.unlink(missing_ok=True)
        return
    wanted = {entry["id"]: entry for entry in rejected}
    for kind in KINDS:
        with (case_dir / f"{kind}.ndjson").open(encoding="utf-8") as handle:
            for action_line in handle:
                document_line = handle.readline()
                doc_id = json.loads(action_line)["create"]["_id"]
                if doc_id in wanted:
                    wanted[doc_id]["document"] = json.loads(document_line)
    partial = case_dir / f"{REJECTED_FILE}.partial"
    with partial.open("w", encoding="utf-8", errors="backslashreplace") as handle:
        for entry in rejected:
            handle.write(json.dumps(entry, ensure_ascii=False, sort_keys=True) + "\n")
    partial.replace(path)
