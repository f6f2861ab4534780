"""Export a case folder into Elasticsearch or OpenSearch: templates, idempotent bulk.

Documents keep the deterministic ids the case folder gives them and go in with the bulk
``create`` operation. A document already in the index answers 409; those are read back
(``_mget``) and compared with the case folder's: an equal one is left alone and counted
as unchanged, a different one (the case was analyzed again with other settings) is
replaced with the bulk ``index`` operation and counted as updated. So re-running an
export adds nothing twice and rewrites nothing that did not change, and a first export
costs no more than a plain ``_bulk`` of ``create`` operations. Documents of the case's
indices that are not in the case folder (left by an earlier analysis) are counted, and
deleted when asked. Documents the server rejects are written with its reason to
``rejected.ndjson`` in the case folder.

The two servers are driven through their own clients (``elasticsearch`` 8.x, which talks
to Elasticsearch 8 and 9 servers, and ``opensearch-py``); what differs between them is
kept in :class:`Flavour`.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
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

#: What a ``_mget`` answer keeps of each document: enough to compare it with ours.
MGET_ANSWER_FIELDS = ["docs._id", "docs.found", "docs._source"]

#: Ids read per scroll page when looking for documents that are not in the case folder.
SCAN_PAGE = 5000

#: Secrets shorter than this, or that read like a word (letters only, digits only), are
#: masked only where a secret stands (URL user info, an Authorization header, a
#: ``password=`` value): masked wherever their text occurs, ``p`` would garble
#: ``http://`` and show which letter the password is. Longer ones of two or more kinds
#: of characters, and any of LONG_SECRET characters or more, are also masked where they
#: stand as a whole token.
MIN_MASKED_SECRET = 6
LONG_SECRET = 16

_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^\s/?#@]+@")
_AUTH_HEADER = re.compile(
    r"(?i)(\bauthorization['\"]?\s*[:=]\s*['\"]?)"
    r"((?:basic|bearer|apikey|api-key|token|digest)\s+)?[^\s'\",;}\]]+"
)
_SECRET_VALUE = re.compile(
    r"(?i)(\b(?:password|passwd|api[_-]?key|bearer[_-]?token|access[_-]?token|secret)"
    r"['\"]?\s*[:=]\s*['\"]?)[^\s'\",;&}\])]+"
)

#: What the TLS layer says when the other side answered in plain text (HTTP): OpenSSL
#: 1.1 to 3.1 say "wrong version number", 3.2 and later "record layer failure".
_NOT_TLS_MARKERS = ("wrong version number", "wrong_version_number", "record layer failure")

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
    """What one export did, per document.

    Every document of the case folder the server answered for is counted once: created
    (it was not there), updated (it was there with other content, and was replaced),
    unchanged (it was there as it is) or rejected. ``stale`` counts the documents of the
    case's indices that are not in the case folder, ``deleted`` those of them removed.
    """

    total: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    stale: int = 0
    deleted: int = 0
    templates: dict[str, str] = field(default_factory=dict)
    stopped: str | None = None

    @property
    def sent(self) -> int:
        """Documents the server answered for."""
        return self.created + self.updated + self.unchanged + self.rejected

    @property
    def unsent(self) -> int:
        """Documents not (yet) in the index because the export stopped."""
        return self.total - self.sent

    def line(self) -> str:
        """The final line of the export."""
        text = (
            f"sent {self.sent}, created {self.created}, updated {self.updated}, "
            f"unchanged {self.unchanged}, rejected {self.rejected}"
        )
        if self.unsent:
            text += f", not sent {self.unsent}"
        if self.stale > self.deleted:
            text += f", not in the case folder {self.stale - self.deleted}"
        if self.deleted:
            text += f", deleted {self.deleted}"
        return text


class Flavour:
    """What differs between Elasticsearch and OpenSearch: the client and its errors."""

    name = ""

    def client(self, connection: Connection) -> Any:
        """A client for ``connection``."""
        raise NotImplementedError

    def scan(self) -> Callable[..., Iterable[dict[str, Any]]]:
        """The client library's scroll helper."""
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

    def scan(self) -> Callable[..., Iterable[dict[str, Any]]]:
        from elasticsearch.helpers import scan

        return scan

    def describe_error(self, exc: Exception, connection: Connection) -> str | None:
        import elastic_transport
        import elasticsearch

        url = connection.url
        if isinstance(exc, elasticsearch.UnsupportedProductError):
            return f"{url} is not Elasticsearch (use `inbec export opensearch` for OpenSearch)"
        if isinstance(exc, elastic_transport.TlsError):
            return tls_message(connection.url, connection.verify_tls, exc)
        if isinstance(exc, elastic_transport.ConnectionError | elastic_transport.ConnectionTimeout):
            return _connect_message(connection, exc)
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

    def scan(self) -> Callable[..., Iterable[dict[str, Any]]]:
        from opensearchpy.helpers import scan

        return scan  # type: ignore[no-any-return]

    def describe_error(self, exc: Exception, connection: Connection) -> str | None:
        from opensearchpy import exceptions as errors

        url = connection.url
        if isinstance(exc, errors.SSLError):
            return tls_message(connection.url, connection.verify_tls, exc)
        if isinstance(exc, errors.ConnectionTimeout | errors.ConnectionError):
            return _connect_message(connection, exc)
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


def error_texts(exc: BaseException) -> list[str]:
    """The text of ``exc`` and of every exception behind it (causes, contexts, and what
    the clients keep: ``errors`` of elastic-transport, ``info`` of opensearch-py, the
    ``reason`` of urllib and urllib3), lower-cased."""
    texts: list[str] = []
    seen: set[int] = set()
    todo: list[object] = [exc]
    while todo and len(seen) < 50:
        item = todo.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        texts.append(str(item).lower())
        if isinstance(item, BaseException):
            todo.extend(e for e in (item.__cause__, item.__context__) if e is not None)
            todo.extend(a for a in item.args if isinstance(a, BaseException))
            for name in ("errors", "info", "reason"):
                value = getattr(item, name, None)
                if isinstance(value, BaseException):
                    todo.append(value)
                elif isinstance(value, tuple | list):
                    todo.extend(v for v in value if isinstance(v, BaseException))
    return texts


def speaks_plain_http(exc: BaseException) -> bool:
    """True when a TLS handshake failed because the server answered without TLS."""
    return any(marker in text for text in error_texts(exc) for marker in _NOT_TLS_MARKERS)


def not_tls_message(url: str) -> str:
    """The message for an https:// URL whose server speaks plain HTTP."""
    plain = "http://" + url.split("://", 1)[1] if "://" in url else url
    return f"the server at {url} does not speak TLS: use {plain}"


def tls_message(
    url: str, verify_tls: bool, exc: BaseException | None = None, ca_hint: str | None = None
) -> str:
    """The message for a failed TLS handshake with ``url``.

    A server that answered in plain HTTP is told apart (whatever --insecure says, since
    the handshake fails before any certificate is looked at); otherwise, with
    verification on, the certificate is what failed; with it off, the handshake itself.
    """
    if exc is not None and speaks_plain_http(exc):
        return not_tls_message(url)
    if not verify_tls:
        return (
            f"TLS handshake with {url} failed: is the host and port the server's HTTPS "
            "port, and does it accept TLS 1.2 or later?"
        )
    hint = ca_hint or "pass the server's CA with --ca-cert FILE"
    return (
        f"TLS certificate of {url} could not be verified: {hint} (or --insecure to skip "
        "verification, not recommended)"
    )


def _connect_message(connection: Connection, exc: Exception) -> str:
    url = connection.url
    if speaks_plain_http(exc):
        return not_tls_message(url)
    cause = str(exc).lower()
    if "ssl" in cause or "certificate" in cause or "tls" in cause:
        return tls_message(url, connection.verify_tls, exc)
    return f"cannot connect to {url}: is the server running, and are the host and port right?"


def _auth_message(url: str) -> str:
    return (
        f"{url} refused the credentials (401): check --user/--password, --api-key or "
        "--bearer-token (or their environment variables)"
    )


def _permission_message(url: str) -> str:
    return (
        f"{url} denied the request (403): the user needs rights to manage index templates "
        "and to read and write the case's indices"
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


def case_documents(case_dir: Path, prefix: str, case_id: str) -> Iterator[tuple[str, str, str]]:
    """``(index, id, document text)`` for every document of the case folder, streamed.

    Each document goes as the JSON text the case folder holds: parsing it only to
    serialise it again would cost about as much as the whole request.
    """
    for kind in KINDS:
        index = index_name(prefix, kind, case_id)
        with (case_dir / f"{kind}.ndjson").open(encoding="utf-8") as handle:
            for action_line in handle:
                document_line = handle.readline()
                doc_id = str(json.loads(action_line)["create"]["_id"])
                yield index, doc_id, document_line.rstrip("\n")


def case_ids(case_dir: Path, kind: str) -> set[str]:
    """The document ids of one kind in the case folder."""
    with (case_dir / f"{kind}.ndjson").open(encoding="utf-8") as handle:
        return {
            str(json.loads(line)["create"]["_id"]) for line in itertools.islice(handle, 0, None, 2)
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


def check_case_id(case_dir: Path, summary: dict[str, Any], case_id: str) -> None:
    """Refuse to send a case folder under another case id than its documents carry.

    The documents say ``inbec.case.id`` (the id they were analyzed with), the index
    names the case given here: were they to differ, the dashboards' case filter and the
    index names would disagree.

    Raises:
        UsageError: the ids differ; the message names both.
    """
    folder_case = str(summary.get("case", {}).get("id") or "")
    if folder_case and folder_case != case_id.strip().lower():
        raise UsageError(
            f"--case {case_id!r} differs from the case id {folder_case!r} of the documents "
            f"in {case_dir}: leave --case out, or analyze again with --case {case_id}"
        )


def export_case(
    flavour: Flavour,
    connection: Connection,
    case_dir: Path,
    case_id: str,
    prefix: str = DEFAULT_PREFIX,
    progress: Callable[[int, int], None] | None = None,
    delete_stale: bool = False,
) -> ExportResult:
    """Install the templates and bring the case's indices to what ``case_dir`` holds.

    Args:
        flavour: Elasticsearch or OpenSearch.
        connection: URL and credentials.
        case_dir: a complete case folder.
        case_id: the case id, part of the index names; the case folder's own.
        prefix: the index and template name prefix.
        progress: called with ``(documents answered, total)`` as the export goes.
        delete_stale: delete the documents of the case's indices that are not in the
            case folder (otherwise they are only counted).

    Returns:
        The counts; ``stopped`` says why the export ended early, if it did.

    Raises:
        UsageError: ``case_dir`` is not a complete case folder, or its documents carry
            another case id than ``case_id``.
        ExportError: the server cannot be used (unreachable, credentials, TLS, a foreign
            template); the message says what to fix and carries no secret.
    """
    summary = check_case_folder(case_dir)
    check_case_id(case_dir, summary, case_id)
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
    indices = [index_name(prefix, kind, case_id) for kind in KINDS]
    # An export into indices that held nothing of the case (the first one, the usual
    # case) leaves nothing there that is not in the case folder: the counts after it
    # are spared.
    held_before = _documents_in(client, indices)
    rejected: list[dict[str, Any]] = []
    held: Counter[str] = Counter()
    try:
        bulk = _Bulk(client, result, rejected, held)
        bulk.run(case_documents(case_dir, prefix, case_id), progress)
    except Exception as exc:
        result.stopped = (
            f"{_explain(flavour, exc, connection)}; {result.unsent} documents not sent: "
            "run the same command again to complete the export"
        )
    _write_rejected(case_dir, rejected)
    try:
        client.indices.refresh(index=indices, ignore_unavailable=True)
    except Exception as exc:
        logger.debug("refresh failed: %s", _scrub(str(exc), connection))
    if result.stopped is None and held_before:
        try:
            _stale(flavour, client, case_dir, prefix, case_id, held, result, delete_stale)
        except Exception as exc:
            logger.warning(
                "could not look for documents that are not in the case folder: %s",
                _explain(flavour, exc, connection),
            )
    return result


def _documents_in(client: Any, indices: list[str]) -> int:
    """How many documents ``indices`` hold (missing ones: none); 1 when the count fails,
    so that the check it spares is made."""
    try:
        return sum(
            int(client.count(index=index, ignore_unavailable=True).get("count") or 0)
            for index in indices
        )
    except Exception:
        return 1


def _stale(
    flavour: Flavour,
    client: Any,
    case_dir: Path,
    prefix: str,
    case_id: str,
    held: Counter[str],
    result: ExportResult,
    delete: bool,
) -> None:
    """Count (and with ``delete``, delete) the documents of the case's indices that are
    not in the case folder.

    An index that holds as many documents as the export found or put there holds
    nothing else: one count per index, no scan, in the usual case. Otherwise its ids are
    scrolled through (ids only) and compared with the case folder's.
    """
    for kind in KINDS:
        index = index_name(prefix, kind, case_id)
        answer = client.count(index=index, ignore_unavailable=True)
        if int(answer.get("count") or 0) <= held[index]:
            continue
        ours = case_ids(case_dir, kind)
        scan = flavour.scan()
        hits = scan(
            client,
            query={"query": {"match_all": {}}, "_source": False},
            index=index,
            size=SCAN_PAGE,
            scroll="2m",
        )
        extra = [str(hit["_id"]) for hit in hits if hit.get("_id") not in ours]
        result.stale += len(extra)
        if delete and extra:
            for ok, item in _send(client, "delete", ((index, i, None) for i in extra)):
                outcome: dict[str, Any] = next(iter(item.values()), {})
                if ok and int(outcome.get("status") or 0) == 200:
                    result.deleted += 1
        if extra:
            logger.info("%d documents of %s are not in the case folder", len(extra), index)


def _explain(flavour: Flavour, exc: Exception, connection: Connection) -> str:
    message = flavour.describe_error(exc, connection)
    if message is None:
        message = f"{flavour.name} export failed: {type(exc).__name__}: {exc}"
    return _scrub(message, connection)


def _scrub(text: str, connection: Connection) -> str:
    return scrub_secrets(text, connection.secrets())


def scrub_secrets(text: str, secrets: Iterable[str]) -> str:
    """``text`` with ``***`` where a secret can stand, and nowhere else.

    Masked whatever the secrets are: the user info of a URL (``scheme://user:pw@``), the
    credentials of an Authorization header, and the value after ``password=``,
    ``api_key:`` and the like. Each of ``secrets`` is also masked where its exact text
    stands as a whole token (not inside a longer word, URL or number), if it looks like
    a secret (see MIN_MASKED_SECRET): a short or word-like password masked wherever its
    text occurs would garble the message and, through the gaps, give itself away.
    """
    text = _USERINFO.sub(r"\1***@", text)
    text = _AUTH_HEADER.sub(lambda m: f"{m.group(1)}{m.group(2) or ''}***", text)
    text = _SECRET_VALUE.sub(r"\1***", text)
    for secret in sorted({s for s in secrets if _looks_secret(s)}, key=len, reverse=True):
        pattern = rf"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])"
        text = re.sub(pattern, "***", text)
    return text


def _looks_secret(value: str) -> bool:
    """Long enough, and not a plain word or number: worth masking as a token."""
    if len(value) >= LONG_SECRET:
        return True
    if len(value) < MIN_MASKED_SECRET:
        return False
    kinds = (
        any(c.isalpha() for c in value),
        any(c.isdigit() for c in value),
        any(not c.isalnum() for c in value),
    )
    return sum(kinds) >= 2


def _send(
    client: Any, op: str, documents: Iterable[tuple[str, str, str | None]]
) -> Iterator[tuple[bool, dict[str, Any]]]:
    """Send ``(index, id, document text)`` with the bulk operation ``op`` (``create``,
    ``index``; ``delete`` takes no text: None); yield ``(ok, answer item)`` for each, in
    order.

    The request body is the documents' own text behind action lines written here (no
    action or document goes through a serialiser: on a fast node the clients' streaming
    helper, chunking and serialising, took a fifth of the export's time). Requests hold
    at most CHUNK_DOCUMENTS documents and CHUNK_BYTES bytes. Documents the server
    answers 429 (too busy), or the whole request when it does, are sent again after a
    backoff (INITIAL_BACKOFF_SECONDS, doubling up to MAX_BACKOFF_SECONDS) up to
    BULK_RETRIES times; then they are answered 429 like any other refusal. Other errors
    of a request (the client's own retries for 502, 503, 504 and lost connections
    spent) are raised.
    """
    for chunk in _chunks(op, documents):
        pending = chunk
        for attempt in range(BULK_RETRIES + 1):
            last = attempt == BULK_RETRIES
            body = b"".join(entry[1] for entry in pending)
            try:
                answer = client.bulk(body=body, filter_path=BULK_ANSWER_FIELDS)
            except Exception as exc:
                if _status(exc) != 429 or last:
                    raise
                time.sleep(min(MAX_BACKOFF_SECONDS, INITIAL_BACKOFF_SECONDS * 2**attempt))
                continue
            items = answer.get("items") or []
            if len(items) != len(pending):
                raise ExportError(
                    f"the bulk answer holds {len(items)} items for {len(pending)} documents"
                )
            busy = []
            for entry, item in zip(pending, items, strict=True):
                outcome: dict[str, Any] = item.get(op) or next(iter(item.values()), {})
                status = int(outcome.get("status") or 0)
                if status == 429 and not last:
                    busy.append(entry)
                    continue
                yield 200 <= status < 300, item
            if not busy:
                break
            pending = busy
            time.sleep(min(MAX_BACKOFF_SECONDS, INITIAL_BACKOFF_SECONDS * 2**attempt))


#: An index name or document id that goes into an action line as it is (index names
#: and the case folder's ids always do).
_PLAIN_NAME = re.compile(r"[A-Za-z0-9._-]+")


def _chunks(
    op: str, documents: Iterable[tuple[str, str, str | None]]
) -> Iterator[list[tuple[str, bytes]]]:
    """``(id, action and document lines)`` lists of at most CHUNK_DOCUMENTS documents
    and CHUNK_BYTES bytes (a larger document goes alone)."""
    chunk: list[tuple[str, bytes]] = []
    size = 0
    for index, doc_id, source in documents:
        if _PLAIN_NAME.fullmatch(index) and _PLAIN_NAME.fullmatch(doc_id):
            action = f'{{"{op}":{{"_index":"{index}","_id":"{doc_id}"}}}}\n'
        else:  # not one of ours: written by the JSON encoder
            action = json.dumps({op: {"_index": index, "_id": doc_id}}) + "\n"
        text = action if source is None else action + source + "\n"
        lines = text.encode("utf-8", "surrogatepass")
        if chunk and (len(chunk) == CHUNK_DOCUMENTS or size + len(lines) > CHUNK_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append((doc_id, lines))
        size += len(lines)
    if chunk:
        yield chunk


class _Bulk:
    """One export's bulk traffic: ``create`` every document, then settle the 409s.

    A document answered 409 is already in the index; they are read back in batches of
    CHUNK_DOCUMENTS (``_mget``) and compared with the case folder's, and those that
    differ go again with the ``index`` operation. ``held`` counts, per index, the case
    folder's documents that are in it after the export.
    """

    def __init__(
        self,
        client: Any,
        result: ExportResult,
        rejected: list[dict[str, Any]],
        held: Counter[str],
    ) -> None:
        self.client = client
        self.result = result
        self.rejected = rejected
        self.held = held
        # Sent and not yet answered: id -> (index, source text).
        self.pending: dict[str, tuple[str, str]] = {}
        # Answered 409, to compare: (index, id, source text).
        self.conflicts: list[tuple[str, str, str]] = []
        self.reads_denied = False

    def _remember(
        self, documents: Iterable[tuple[str, str, str]]
    ) -> Iterator[tuple[str, str, str]]:
        for index, doc_id, source in documents:
            self.pending[doc_id] = (index, source)
            yield index, doc_id, source

    def run(
        self,
        documents: Iterable[tuple[str, str, str]],
        progress: Callable[[int, int], None] | None,
    ) -> None:
        result = self.result
        last = time.monotonic()
        for ok, item in _send(self.client, "create", self._remember(documents)):
            outcome: dict[str, Any] = item.get("create") or next(iter(item.values()), {})
            doc_id = str(outcome.get("_id"))
            index, source = self.pending.pop(doc_id, (str(outcome.get("_index")), ""))
            status = int(outcome.get("status") or 0)
            if ok and status in (200, 201):
                result.created += 1
                self.held[index] += 1
            elif status == 409 and source:
                self.conflicts.append((index, doc_id, source))
                if len(self.conflicts) >= CHUNK_DOCUMENTS:
                    self.settle()
            elif status == 409:
                result.unchanged += 1
                self.held[index] += 1
            else:
                self._reject(outcome, status)
            if progress is not None and (time.monotonic() - last > 0.2 or result.unsent == 0):
                progress(result.sent, result.total)
                last = time.monotonic()
        self.settle()
        if progress is not None:
            progress(result.sent, result.total)

    def settle(self) -> None:
        """Compare the documents answered 409 with what the index holds; replace those
        that differ."""
        conflicts, self.conflicts = self.conflicts, []
        if not conflicts:
            return
        stored = self._stored(conflicts)
        changed = []
        where = {doc_id: index for index, doc_id, _ in conflicts}
        for index, doc_id, source in conflicts:
            current = stored.get((index, doc_id))
            if current is not None and current == json.loads(source):
                self.result.unchanged += 1
                self.held[index] += 1
            else:
                changed.append((index, doc_id, source))
        for ok, item in _send(self.client, "index", changed):
            outcome: dict[str, Any] = item.get("index") or next(iter(item.values()), {})
            status = int(outcome.get("status") or 0)
            index = where.get(str(outcome.get("_id")), str(outcome.get("_index")))
            if ok and status == 200:
                self.result.updated += 1
                self.held[index] += 1
            elif ok and status == 201:  # deleted in the meantime
                self.result.created += 1
                self.held[index] += 1
            else:
                self._reject(outcome, status)

    def _stored(self, conflicts: list[tuple[str, str, str]]) -> dict[tuple[str, str], Any]:
        """The sources the index holds for ``conflicts``, by (index, id); none when the
        user may write but not read (every one is then replaced)."""
        if self.reads_denied:
            return {}
        by_index: dict[str, list[str]] = {}
        for index, doc_id, _ in conflicts:
            by_index.setdefault(index, []).append(doc_id)
        stored: dict[tuple[str, str], Any] = {}
        for index, ids in by_index.items():
            try:
                answer = self.client.mget(
                    index=index, body={"ids": ids}, filter_path=MGET_ANSWER_FIELDS
                )
            except Exception as exc:
                if _status(exc) != 403:
                    raise
                logger.warning(
                    "the user may not read %s: documents already there are replaced "
                    "without comparing them",
                    index,
                )
                self.reads_denied = True
                return {}
            for doc in answer.get("docs") or []:
                if doc.get("found"):
                    stored[(index, str(doc.get("_id")))] = doc.get("_source")
        return stored

    def _reject(self, outcome: dict[str, Any], status: int) -> None:
        self.result.rejected += 1
        self.rejected.append(
            {
                "index": outcome.get("_index"),
                "id": outcome.get("_id"),
                "status": status,
                "reason": _api_reason({"error": outcome.get("error")}),
                "error": outcome.get("error"),
            }
        )


def _status(exc: Exception) -> int | None:
    """The HTTP status of a client error, whichever client raised it."""
    for value in (
        getattr(exc, "status_code", None),
        getattr(getattr(exc, "meta", None), "status", None),
    ):
        if isinstance(value, int):
            return value
    return None


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
